from dynid.cli import entry

entry()
