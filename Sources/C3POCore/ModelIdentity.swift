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
    /// The checkpoint's `model_type` (absent in indices written before families existed: OLMoE).
    public var family: String?
    /// The decoder layers with a router, when not all of them are (absent: every layer).
    public var routedLayers: [Int]?
    /// SHA-256 of the checkpoint's `tokenizer.json` (absent in indices written before it was
    /// recorded): the same config with another tokenizer gives other prompts' tokens.
    public var tokenizerSHA256: String?

    enum CodingKeys: String, CodingKey {
        case id, layers, experts, family
        case configSHA256 = "config_sha256"
        case topK = "top_k"
        case routedLayers = "routed_layers"
        case tokenizerSHA256 = "tokenizer_sha256"
    }

    public init(id: String, configSHA256: String, layers: Int, experts: Int, topK: Int, family: String? = nil, routedLayers: [Int]? = nil) {
        self.id = id; self.configSHA256 = configSHA256; self.layers = layers; self.experts = experts; self.topK = topK
        self.family = family; self.routedLayers = routedLayers
    }
}
