import ArgumentParser
import C3POModel
import Foundation

/// `--model DIR`: a Hugging Face MoE checkpoint folder (config.json, tokenizer.json, safetensors).
public struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Hugging Face checkpoint folder (config.json, tokenizer.json, model.safetensors or shards).", valueName: "dir"))
    public var model: PathArgument

    public init() {}

    public func load() throws -> RoutedMoEModel { try Self.load(model) }

    /// The one place a command loads a checkpoint (`path` as the user typed it).
    static func load(_ path: PathArgument) throws -> RoutedMoEModel {
        try ModelLoader.load(directory: try InputPaths.model(path))
    }
}
