import C3POCommands

IndexCommand.main()
