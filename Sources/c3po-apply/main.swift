import C3POCommands

ApplyCommand.main()
