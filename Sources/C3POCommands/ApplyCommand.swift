import ArgumentParser

/// `c3po-apply`: the runtime: re-mix a test set's routing toward its successful neighbours.
public struct ApplyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "c3po-apply",
        abstract: "Run a test set with C3PO expert re-mixing and report base vs C3PO accuracy.",
        subcommands: [InspectCommand.self]
    )
    public init() {}
}
