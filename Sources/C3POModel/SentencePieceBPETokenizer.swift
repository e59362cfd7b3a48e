import Foundation

/// A SentencePiece-style BPE tokenizer read from a Hugging Face `tokenizer.json` (Llama, Mistral,
/// Mixtral), equal to the Rust `tokenizers` crate: the model works on characters, spaces become
/// "▁", and characters outside the vocabulary fall back to their UTF-8 bytes' `<0xXX>` tokens.
/// Both spellings of that in tokenizer.json are run:
/// - older files: normalizer Sequence[Prepend("▁"), Replace(" " → "▁")] and no pre-tokenizer
///   (each text between added tokens gets its own "▁");
/// - newer files: no normalizer and pre_tokenizer Metaspace("▁", prepend_scheme "first" (only
///   the text at the very start gets a "▁") or "always", split false or true).
/// The post-processor's TemplateProcessing adds `<s>`; the decoder chain is read from the file.
public final class SentencePieceBPETokenizer: @unchecked Sendable {
    /// The decoders this tokenizer runs (tokenizers/src/decoders/*.rs).
    enum DecodeStep {
        case replace([Unicode.Scalar], with: [Unicode.Scalar])
        case byteFallback
        case fuse
        case strip(Unicode.Scalar, start: Int, stop: Int)
        case metaspace(Unicode.Scalar, prepend: PrependScheme)
    }

    private let pipeline: TokenizerPipeline
    private let decoder: [DecodeStep]?

    public var vocabularySize: Int { pipeline.vocabularySize }

    public convenience init(url: URL) throws {
        try self.init(json: TokenizerJSON.read(url), url: url)
    }

    init(json root: [String: Any], url: URL) throws {
        pipeline = try TokenizerPipeline(json: root, url: url)
        if let i = pipeline.preTokenizer.firstIndex(where: \.isByteLevel) {
            throw TokenizerError.unsupported(url, "pre_tokenizer step \(i) ByteLevel is not supported in a SentencePiece BPE tokenizer")
        }
        decoder = try Self.parseDecoder(root["decoder"], url: url)
    }

    public func encode(_ text: String) -> [Int] { pipeline.encode(text) }

    /// The ids without the post-processor's template when `addSpecialTokens` is false (no BOS).
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] { pipeline.encode(text, addSpecialTokens: addSpecialTokens) }

    public func tokenID(_ token: String) -> Int? { pipeline.tokenID(token) }

    public func token(for id: Int) -> String? { pipeline.token(for: id) }

    /// The text of `ids` through the file's decoder chain (Tokenizer::decode): with no decoder,
    /// the tokens joined by spaces.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [[Unicode.Scalar]] = []
        for id in ids {
            if skipSpecialTokens, pipeline.added.byID[id]?.special == true { continue }
            if let t = pipeline.token(for: id) { tokens.append(Array(t.unicodeScalars)) }
        }
        guard let decoder else { return tokens.map { String(String.UnicodeScalarView($0)) }.joined(separator: " ") }
        for step in decoder { tokens = Self.run(step, tokens) }
        return tokens.map { String(String.UnicodeScalarView($0)) }.joined()
    }

    private static func run(_ step: DecodeStep, _ tokens: [[Unicode.Scalar]]) -> [[Unicode.Scalar]] {
        switch step {
        case let .replace(pattern, content):
            return tokens.map { TextNormalizer(steps: [.replace(pattern, with: content)]).apply($0) }
        case .byteFallback:
            // Runs of <0xXX> tokens become their bytes' text, or one U+FFFD per byte when the run is
            // not valid UTF-8 (decoders/byte_fallback.rs).
            var out: [[Unicode.Scalar]] = []
            var bytes: [UInt8] = []
            func flush() {
                guard !bytes.isEmpty else { return }
                if let s = String(validating: bytes, as: UTF8.self) {
                    out.append(Array(s.unicodeScalars))
                } else {
                    out += Array(repeating: ["\u{FFFD}"], count: bytes.count)
                }
                bytes.removeAll()
            }
            for t in tokens {
                if let b = byteValue(t) { bytes.append(b); continue }
                flush()
                out.append(t)
            }
            flush()
            return out
        case .fuse:
            return [tokens.flatMap { $0 }]
        case let .strip(content, start, stop):
            return tokens.map { t in
                var lo = 0, hi = t.count
                while lo < min(start, t.count) && t[lo] == content { lo += 1 }
                var cut = 0
                while cut < stop && hi > lo && t[hi - 1] == content { hi -= 1; cut += 1 }
                return Array(t[lo..<hi])
            }
        case let .metaspace(replacement, prepend):
            // Every replacement becomes a space, except in the first token when a prefix was added.
            return tokens.enumerated().map { i, t in
                t.compactMap { c in c == replacement ? ((i == 0 && prepend != .never) ? nil : " ") : c }
            }
        }
    }

    /// `<0xXX>` (six characters) → the byte.
    private static func byteValue(_ t: [Unicode.Scalar]) -> UInt8? {
        guard t.count == 6, t[0] == "<", t[1] == "0", t[2] == "x", t[5] == ">" else { return nil }
        return UInt8(String(String.UnicodeScalarView(t[3...4])), radix: 16)
    }

    static func parseDecoder(_ json: Any?, url: URL) throws -> [DecodeStep]? {
        guard let json, !(json is NSNull) else { return nil }
        var steps: [DecodeStep] = []
        func walk(_ d: Any, _ path: String) throws {
            guard let o = d as? [String: Any] else { throw TokenizerError.malformed(url, "\(path) is not an object") }
            let type = o["type"] as? String ?? ""
            switch type {
            case "Sequence":
                guard let list = o["decoders"] as? [Any] else { throw TokenizerError.malformed(url, "\(path).decoders is not an array") }
                for (i, s) in list.enumerated() { try walk(s, "\(path).decoders[\(i)]") }
            case "Replace":
                guard let pattern = (o["pattern"] as? [String: Any])?["String"] as? String, let content = o["content"] as? String else {
                    throw TokenizerError.unsupported(url, "\(path) Replace without a String pattern and content is not supported")
                }
                steps.append(.replace(Array(pattern.unicodeScalars), with: Array(content.unicodeScalars)))
            case "ByteFallback":
                steps.append(.byteFallback)
            case "Fuse":
                steps.append(.fuse)
            case "Strip":
                guard let c = (o["content"] as? String)?.unicodeScalars, c.count == 1, let content = c.first else {
                    throw TokenizerError.malformed(url, "\(path).content is not one character")
                }
                steps.append(.strip(content, start: (o["start"] as? NSNumber)?.intValue ?? 0, stop: (o["stop"] as? NSNumber)?.intValue ?? 0))
            case "Metaspace":
                guard case let .metaspace(replacement, prepend, _)? = try PreTokenizerStep.parse(o, url: url, path: path).first else {
                    throw TokenizerError.malformed(url, "\(path) is not a Metaspace")
                }
                steps.append(.metaspace(replacement, prepend: prepend))
            default:
                throw TokenizerError.unsupported(url, "\(path).type '\(type)' is not supported (supported: Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence[...])")
            }
        }
        try walk(json, "decoder")
        return steps
    }
}
