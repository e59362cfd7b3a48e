import Foundation

/// Who a model is: recorded in index manifests so that pathways are only ever
/// mixed into the model that produced them.
public struct ModelIdentity: Codable, Sendable, Equatable {
    /// A human-readable name (the checkpoint folder's name, or `_name_or_path`).
    public var id: String
    /// SHA-256 of the checkpoint's `config.json`.
    public var configSHA256: String
    public var layers: Int
    public var experts: Int
    public var topK: Int

    enum CodingKeys: String, CodingKey {
        case id, layers, experts
        case configSHA256 = "config_sha256"
        case topK = "top_k"
    }

    public init(id: String, configSHA256: String, layers: Int, experts: Int, topK: Int) {
        self.id = id; self.configSHA256 = configSHA256; self.layers = layers; self.experts = experts; self.topK = topK
    }
}
