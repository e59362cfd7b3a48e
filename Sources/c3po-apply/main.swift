import C3POCommands

// A generic OpenBLAS core on a CPU with AVX2/AVX-512 is corrected before anything runs.
ToolVersion.prepareProcess()

// ApplyCommand.main: the root help lists the default subcommand's options; a mistyped
// option is named as such (ToolEntry).
ApplyCommand.main()
