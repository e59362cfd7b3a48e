import ArgumentParser

/// `c3po-index`: offline preprocessing: embeddings, reference indices.
public struct IndexCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "c3po-index",
        abstract: "Build and inspect C3PO reference indices (embeddings, FAISS, successful pathways).",
        discussion: "Indices are folders in the format of Index/README.md.",
        version: ToolVersion.text("c3po-index"),
        subcommands: [EmbedCommand.self, BuildCommand.self, MergeCommand.self, QueryCommand.self, InfoCommand.self, VerifyCommand.self]
    )
    public init() {}
}
