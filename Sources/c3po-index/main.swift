import C3POCommands

// ToolEntry.main: ParsableCommand.main, except that a mistyped option is named as such.
ToolEntry.main(IndexCommand.self)
