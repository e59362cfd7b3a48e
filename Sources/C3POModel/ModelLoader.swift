import C3POCore
import Foundation

/// Opens a Hugging Face checkpoint folder as a routed MoE model: the one place where
/// `model_type` picks the architecture (one file per architecture).
public enum ModelLoader {
    /// Every family the engine runs; a new family adds its file and one line here.
    static let families: [any ModelFamily.Type] = [Olmoe.self, Qwen2Moe.self, Qwen3Moe.self, Mixtral.self, DeepseekMoe.self]

    public static var supportedTypes: [String] { families.map { $0.modelType } }

    /// The largest config.json / generation_config.json read (real ones are a few KB).
    public static let maxConfigBytes = 16 << 20

    public static func load(directory: URL) throws -> RoutedMoEModel {
        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else { throw FileError.missing(directory, "config.json") }
        let data = try FileError.read(configURL, limit: maxConfigBytes, what: "a config.json")
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.config(configURL, field: "(root)", "not a JSON object")
        }
        guard let type = obj["model_type"] as? String else { throw ModelError.config(configURL, field: "model_type", "missing") }
        guard let family = families.first(where: { $0.modelType == type }) else { throw ModelError.unsupportedModelType(configURL, type) }
        var hasher = SHA256Hasher()
        hasher.update(data)
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerURL.path) else { throw FileError.missing(directory, "tokenizer.json") }
        // One read of tokenizer.json: the bytes parsed are the bytes hashed into the identity.
        let tokenizerData = try FileError.read(tokenizerURL, limit: TokenizerLoader.maxBytes, what: "a tokenizer.json")
        let tokenizer = try TokenizerLoader.load(tokenizerData, url: tokenizerURL)
        var tokenizerHasher = SHA256Hasher()
        tokenizerHasher.update(tokenizerData)
        let model = try family.load(ModelSource(directory: directory, configURL: configURL, configData: data,
                                                configSHA256: hasher.finalize(), tokenizerSHA256: tokenizerHasher.finalize(), tokenizer: tokenizer))
        // What ends generation: generation_config.json's eos_token_id (what transformers' generate uses), else config.json's.
        let generation = directory.appendingPathComponent("generation_config.json")
        let genObj = (try? FileError.read(generation, limit: maxConfigBytes, what: "a generation_config.json")).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        model.endTokenIDs = endTokens(genObj?["eos_token_id"] ?? obj["eos_token_id"])
        return model
    }

    /// `eos_token_id`: an integer or a list of them.
    static func endTokens(_ value: Any?) -> Set<Int> {
        if let n = value as? Int { return [n] }
        if let list = value as? [Any] { return Set(list.compactMap { $0 as? Int }) }
        return []
    }

    /// Decodes a config, turning DecodingError into an error naming the field.
    static func decode<T: Decodable>(_ type: T.Type, _ data: Data, _ url: URL) throws -> T {
        do {
            return try JSONDecoding.decode(T.self, from: data)
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
