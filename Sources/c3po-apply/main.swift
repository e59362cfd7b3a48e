import C3POCommands

// ApplyCommand.main: the root help lists the default subcommand's options; a mistyped
// option is named as such (ToolEntry).
ApplyCommand.main()
