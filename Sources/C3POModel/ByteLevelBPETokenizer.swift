import Foundation

public enum TokenizerError: Error, CustomStringConvertible {
    case malformed(URL, String)
    case unsupported(URL, String)
    case notSingleToken(String, [Int])

    public var description: String {
        switch self {
        case let .malformed(url, why): return "\(url.path): malformed tokenizer.json: \(why)"
        case let .unsupported(url, why): return "\(url.path): unsupported tokenizer.json: \(why)"
        case let .notSingleToken(label, ids): return "label '\(label)' encodes to \(ids.count) tokens \(ids), expected exactly one"
        }
    }
}

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`, equal to the Rust
/// `tokenizers` crate for the GPT-2 / GPT-NeoX / OLMo, Qwen2 (Qwen1.5-MoE, Qwen2-MoE, Qwen3-MoE)
/// and DeepSeek LLM (DeepSeekMoE, DeepSeek-V2) families:
/// added tokens split out first, then the normaliser (NFC, Prepend, Replace or none), the
/// pre-tokenizer (ByteLevel with the GPT-2 regex; or Splits by the cl100k, Qwen2 or DeepSeek
/// regexes and Digits, then ByteLevel(use_regex: false)), BPE merges by rank, and the
/// post-processor's template (ByteLevel adds nothing; TemplateProcessing may add a BOS).
public final class ByteLevelBPETokenizer: @unchecked Sendable {
    private let pipeline: TokenizerPipeline

    public var vocabularySize: Int { pipeline.vocabularySize }

    public convenience init(url: URL) throws {
        try self.init(json: TokenizerJSON.read(url), url: url)
    }

    init(json root: [String: Any], url: URL) throws {
        pipeline = try TokenizerPipeline(json: root, url: url)
        // The model's alphabet is ByteLevel's byte table: exactly one ByteLevel, last.
        let steps = pipeline.preTokenizer
        guard steps.last?.isByteLevel == true, steps.filter(\.isByteLevel).count == 1 else {
            throw TokenizerError.unsupported(url, "pre_tokenizer with ByteLevel other than once, as the last step, is not supported")
        }
        if let i = steps.firstIndex(where: { if case .metaspace = $0 { return true } else { return false } }) {
            throw TokenizerError.unsupported(url, "pre_tokenizer step \(i) Metaspace together with ByteLevel is not supported")
        }
    }

    public func encode(_ text: String) -> [Int] { pipeline.encode(text) }

    /// The ids without the post-processor's template when `addSpecialTokens` is false (no BOS).
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] { pipeline.encode(text, addSpecialTokens: addSpecialTokens) }

    public func tokenID(_ token: String) -> Int? { pipeline.tokenID(token) }

    public func token(for id: Int) -> String? { pipeline.token(for: id) }

    /// The text of `ids` (ByteLevel decoder: each token's characters mapped back to bytes,
    /// or the token's own UTF-8 where a character is outside the byte table, as added
    /// tokens are; then lossy UTF-8).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens, pipeline.added.byID[id]?.special == true { continue }
            guard let tok = pipeline.token(for: id) else { continue }
            var tb: [UInt8] = []
            var ok = true
            for s in tok.unicodeScalars {
                guard let b = ByteLevelAlphabet.scalarToByte[s.value] else { ok = false; break }
                tb.append(b)
            }
            bytes += ok ? tb : Array(tok.utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
