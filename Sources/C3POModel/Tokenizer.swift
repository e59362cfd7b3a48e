import C3POCore
import Foundation

/// A tokenizer read from a Hugging Face `tokenizer.json`, as the engine uses it.
public protocol TextTokenizer: AnyObject, Sendable {
    var vocabularySize: Int { get }
    /// Token ids of `text`, with what the post-processor's template adds (as the Rust library).
    func encode(_ text: String) -> [Int]
    /// Token ids of `label` as it follows a prompt after a space ("Answer:" + " A"), without
    /// special tokens: what multiple-choice scoring reads at the prompt's last position.
    func continuationIDs(_ label: String) -> [Int]
}

/// A tokenizer that can also turn ids back into text (for display).
public protocol TokenDecoding {
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
}

extension ByteLevelBPETokenizer: TextTokenizer, TokenDecoding {
    /// Byte-level BPE keeps the space in the token (`ĠA`).
    public func continuationIDs(_ label: String) -> [Int] { encode(" " + label, addSpecialTokens: false) }
}

extension SentencePieceBPETokenizer: TextTokenizer, TokenDecoding {
    /// SentencePiece-style BPE writes the preceding space as the `▁` its normaliser or Metaspace
    /// prepends to a text (`▁A`): encoding " A" would give `▁▁A`.
    public func continuationIDs(_ label: String) -> [Int] { encode(label, addSpecialTokens: false) }
}

/// Picks the implementation a `tokenizer.json` needs from its components:
/// a ByteLevel pre-tokenizer (GPT-2, GPT-NeoX, OLMo, Qwen2/3, DeepSeek LLM) → `ByteLevelBPETokenizer`;
/// otherwise (Metaspace or no pre-tokenizer: Llama / Mistral / Mixtral SentencePiece BPE) →
/// `SentencePieceBPETokenizer`. Each refuses, by JSON path and value, what it does not run.
public enum TokenizerLoader {
    /// The largest tokenizer.json read (real ones are up to about 35 MB; parsing takes several
    /// times the file's size in memory).
    public static let maxBytes = 256 << 20

    public static func load(_ url: URL) throws -> any TextTokenizer {
        let data: Data
        do { data = try FileError.read(url, limit: maxBytes, what: "a tokenizer.json") } catch let e as FileError { throw e } catch {
            throw TokenizerError.malformed(url, "cannot read: \(error.localizedDescription)")
        }
        return try load(data, url: url)
    }

    /// The tokenizer of `data`, the bytes of the tokenizer.json at `url` (named in errors).
    public static func load(_ data: Data, url: URL) throws -> any TextTokenizer {
        let root = try TokenizerJSON.parse(data, url: url)
        let model = root["model"] as? [String: Any] ?? [:]
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupported(url, "model.type '\(type)' is not supported (supported: BPE)") }
        if TokenizerJSON.mentionsByteLevel(root["pre_tokenizer"]) {
            return try ByteLevelBPETokenizer(json: root, url: url)
        }
        return try SentencePieceBPETokenizer(json: root, url: url)
    }
}

/// What both tokenizer kinds share: added tokens, normaliser, pre-tokenizer steps, the BPE model
/// and the post-processor's template, run in the crate's order (TokenizerImpl::encode_single_sequence).
struct TokenizerPipeline: Sendable {
    let added: AddedVocabulary
    let normalizer: TextNormalizer
    let preTokenizer: [PreTokenizerStep]
    let model: BPEModel
    let prefixIDs: [Int]
    let suffixIDs: [Int]

    init(json root: [String: Any], url: URL) throws {
        for key in ["truncation", "padding"] where !(root[key] == nil || root[key] is NSNull) {
            throw TokenizerError.unsupported(url, "\(key) is not supported (only null: it would change the ids of a single encode)")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.malformed(url, "no 'model' object") }
        self.model = try BPEModel(json: model, url: url)
        normalizer = try TextNormalizer.parse(root["normalizer"], url: url)
        added = try AddedVocabulary(json: root["added_tokens"], normalizer: normalizer, url: url)
        preTokenizer = try PreTokenizerStep.parse(root["pre_tokenizer"], url: url)
        (prefixIDs, suffixIDs) = try TokenizerJSON.template(root["post_processor"], url: url)
    }

    var vocabularySize: Int {
        max(max(model.idToToken.keys.max() ?? -1, added.tokens.map(\.id).max() ?? -1) + 1, 0)
    }

    /// `addSpecialTokens`: apply the post-processor's template (the crate's `add_special_tokens`).
    func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids = addSpecialTokens ? prefixIDs : []
        // Added tokens that match the raw text come out first; then those that match after normalising.
        for piece in added.split(Array(text.unicodeScalars), normalized: false) {
            switch piece {
            case let .token(id): ids.append(id)
            case let .text(scalars, start):
                for inner in added.split(normalizer.apply(scalars), normalized: true) {
                    switch inner {
                    case let .token(id): ids.append(id)
                    case let .text(s, innerStart):
                        var pieces = [TextPiece(text: s, atOrigin: start == 0 && innerStart == 0)]
                        for step in preTokenizer { pieces = step.apply(pieces) }
                        for p in pieces { model.tokenize(p.text, into: &ids) }
                    }
                }
            }
        }
        return addSpecialTokens ? ids + suffixIDs : ids
    }

    func tokenID(_ token: String) -> Int? { added.id(of: token) ?? model.id(of: token) }

    func token(for id: Int) -> String? { added.byID[id]?.content ?? model.idToToken[id] }
}

enum TokenizerJSON {
    static func read(_ url: URL) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw TokenizerError.malformed(url, "cannot read: \(error.localizedDescription)") }
        return try parse(data, url: url)
    }

    static func parse(_ data: Data, url: URL) throws -> [String: Any] {
        guard var root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.malformed(url, "not a JSON object")
        }
        // model.vocab byte for byte (Foundation merges canonically equivalent keys).
        if var model = root["model"] as? [String: Any], model["vocab"] is [String: Any] {
            do {
                if let exact = try ExactVocabReader.read(data) { model["vocab"] = exact; root["model"] = model }
            } catch let failure as JSONScanner.Error {
                throw TokenizerError.malformed(url, "model.vocab: \(failure)")
            }
        }
        return root
    }

    /// Whether a pre_tokenizer (or one inside its Sequence) is ByteLevel.
    static func mentionsByteLevel(_ json: Any?) -> Bool {
        guard let p = json as? [String: Any] else { return false }
        if p["type"] as? String == "ByteLevel" { return true }
        return (p["pretokenizers"] as? [Any] ?? []).contains(where: mentionsByteLevel)
    }

    /// The ids the post-processor puts around a single sequence: ByteLevel adds none,
    /// TemplateProcessing's `single` template adds its special tokens (processors/template.rs).
    static func template(_ json: Any?, url: URL) throws -> (prefix: [Int], suffix: [Int]) {
        var prefix: [Int] = [], suffix: [Int] = []
        func walk(_ p: Any?, _ path: String) throws {
            guard let p, !(p is NSNull) else { return }
            guard let o = p as? [String: Any] else { throw TokenizerError.malformed(url, "\(path) is not an object") }
            let type = o["type"] as? String ?? ""
            switch type {
            case "ByteLevel": return
            case "Sequence":
                for (i, s) in (o["processors"] as? [Any] ?? []).enumerated() { try walk(s, "\(path).processors[\(i)]") }
            case "TemplateProcessing":
                let specials = o["special_tokens"] as? [String: [String: Any]] ?? [:]
                var seenSequence = false
                for (i, piece) in (o["single"] as? [[String: Any]] ?? []).enumerated() {
                    if let seq = piece["Sequence"] as? [String: Any] {
                        guard !seenSequence, seq["id"] as? String == "A" else {
                            throw TokenizerError.unsupported(url, "\(path).single[\(i)] is not supported (one sequence $A per template)")
                        }
                        seenSequence = true
                        continue
                    }
                    guard let st = piece["SpecialToken"] as? [String: Any], let name = st["id"] as? String,
                          let ids = specials[name]?["ids"] as? [NSNumber] else {
                        throw TokenizerError.malformed(url, "\(path).single[\(i)] is neither a Sequence nor a known SpecialToken")
                    }
                    if seenSequence { suffix += ids.map(\.intValue) } else { prefix += ids.map(\.intValue) }
                }
            default:
                throw TokenizerError.unsupported(url, "\(path).type '\(type)' is not supported (supported: ByteLevel, TemplateProcessing, Sequence[...])")
            }
        }
        try walk(json, "post_processor")
        return (prefix, suffix)
    }
}
