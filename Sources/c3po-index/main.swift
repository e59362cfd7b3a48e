import C3POCommands

// A generic OpenBLAS core on a CPU with AVX2/AVX-512 is corrected before anything runs.
ToolVersion.prepareProcess()

// ToolEntry.main: ParsableCommand.main, except that a mistyped option is named as such.
ToolEntry.main(IndexCommand.self)
