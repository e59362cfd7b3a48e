import C3POCore
import Foundation

/// Opens a Hugging Face checkpoint folder as a routed MoE model: the one place where
/// `model_type` picks the architecture (one file per architecture).
public enum ModelLoader {
    public static let supportedTypes = ["olmoe"]

    public static func load(directory: URL) throws -> RoutedMoEModel {
        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else { throw FileError.missing(directory, "config.json") }
        let data = try Data(contentsOf: configURL)
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.config(configURL, field: "(root)", "not a JSON object")
        }
        guard let type = obj["model_type"] as? String else { throw ModelError.config(configURL, field: "model_type", "missing") }
        var hasher = SHA256Hasher()
        hasher.update(data)
        let sha = hasher.finalize()
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerURL.path) else { throw FileError.missing(directory, "tokenizer.json") }
        switch type {
        case "olmoe":
            let config = try decode(OlmoeConfig.self, data, configURL)
            try config.validate(configURL)
            let tokenizer = try ByteLevelBPETokenizer(url: tokenizerURL)
            let name = config.nameOrPath.flatMap { $0.isEmpty ? nil : $0 } ?? directory.standardizedFileURL.lastPathComponent
            let identity = ModelIdentity(id: name, configSHA256: sha, layers: config.numHiddenLayers,
                                         experts: config.numExperts, topK: config.numExpertsPerTok)
            return try OlmoeModel(directory: directory, config: config, identity: identity, tokenizer: tokenizer)
        default:
            throw ModelError.unsupportedModelType(configURL, type)
        }
    }

    /// Decodes a config, turning DecodingError into an error naming the field.
    static func decode<T: Decodable>(_ type: T.Type, _ data: Data, _ url: URL) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ModelError.config(url, field: (ctx.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: "."), "missing")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ModelError.config(url, field: ctx.codingPath.map(\.stringValue).joined(separator: "."), "wrong type: \(ctx.debugDescription)")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw ModelError.config(url, field: ctx.codingPath.map(\.stringValue).joined(separator: "."), "null")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ModelError.config(url, field: ctx.codingPath.map(\.stringValue).joined(separator: "."), ctx.debugDescription)
        }
    }
}
