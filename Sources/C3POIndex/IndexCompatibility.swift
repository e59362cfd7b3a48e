import C3POCore
import Foundation

public enum IndexCompatibilityError: Error, CustomStringConvertible {
    case shape(URL, String)
    case otherModel(URL, String)

    public var description: String {
        switch self {
        case .shape(let u, let s): return "\(u.path): \(s)"
        case .otherModel(let u, let s): return "\(u.path): \(s)"
        }
    }
}

/// Pathways may only be mixed into the model that produced them (Index/README.md,
/// `manifest.json`): the layer and expert counts must match, and an index built with
/// `--model` must name the same checkpoint configuration (SHA-256 of `config.json`).
/// An index built from archives alone (`model: null`) carries pathways of someone
/// else's engine; only its shape can be checked.
public enum IndexCompatibility {
    public static func check(_ manifest: IndexManifest, directory: URL, model: ModelIdentity) throws {
        let manifestURL = directory.appendingPathComponent(IndexFolder.manifestFile)
        guard manifest.layers == model.layers, manifest.experts == model.experts else {
            throw IndexCompatibilityError.shape(manifestURL,
                "the index holds pathways of \(manifest.layers) layers × \(manifest.experts) experts; the model '\(model.id)' has \(model.layers) layers × \(model.experts) experts: refusing to mix them")
        }
        if let m = manifest.model {
            guard m.configSHA256 == model.configSHA256 else {
                throw IndexCompatibilityError.otherModel(manifestURL,
                    "the index was built with model '\(m.id)' (config sha256 \(m.configSHA256.prefix(12))…); the model given is '\(model.id)' (config sha256 \(model.configSHA256.prefix(12))…): refusing to mix pathways of another model")
            }
            guard m.topK == model.topK else {
                throw IndexCompatibilityError.otherModel(manifestURL, "the index was built with top_k \(m.topK); the model has top_k \(model.topK)")
            }
            // Indices written before families existed hold OLMoE pathways and name no family.
            let (built, given) = (m.family ?? "olmoe", model.family ?? "olmoe")
            guard built == given else {
                throw IndexCompatibilityError.otherModel(manifestURL, "the index was built for the \(built) family; the model is \(given)")
            }
            if let built = m.tokenizerSHA256, let given = model.tokenizerSHA256, built != given {
                throw IndexCompatibilityError.otherModel(manifestURL,
                    "the index was built with another tokenizer.json (sha256 \(built.prefix(12))…; the model's is \(given.prefix(12))…): refusing to mix pathways recorded on other tokens")
            }
            let all = Array(0..<model.layers)
            guard (m.routedLayers ?? all) == (model.routedLayers ?? all) else {
                throw IndexCompatibilityError.otherModel(manifestURL,
                    "the index was built for routed layers \((m.routedLayers ?? all).map(String.init).joined(separator: ",")); the model routes layers \((model.routedLayers ?? all).map(String.init).joined(separator: ","))")
            }
        }
    }
}
