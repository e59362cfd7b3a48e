import ArgumentParser

/// `c3po-apply`: the runtime: re-mix a test set's routing toward its successful neighbours.
/// `run` is the default subcommand: `c3po-apply --index ...` and `c3po-apply run --index ...` are the same.
public struct ApplyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "c3po-apply",
        abstract: "Run a test set with C3PO expert re-mixing and report base vs C3PO accuracy.",
        subcommands: [RunCommand.self, InspectCommand.self],
        defaultSubcommand: RunCommand.self
    )
    public init() {}
}
