import Foundation

/// Errors from reading a BERT tokenizer's files.
public enum TokenizerError: Error, CustomStringConvertible {
    case missing(URL)
    case malformed(URL, String)

    public var description: String {
        switch self {
        case let .missing(url): return "\(url.path): missing (need vocab.txt or tokenizer.json)"
        case let .malformed(url, why): return "\(url.path): \(why)"
        }
    }
}

/// BERT's WordPiece tokenizer, equal to the Hugging Face fast one (the Rust `tokenizers`
/// crate: `normalizers/bert.rs` BertNormalizer, `pre_tokenizers/bert.rs` BertPreTokenizer,
/// `models/wordpiece` WordPiece, TemplateProcessing `[CLS] A [SEP]`).
public struct WordPieceTokenizer: Sendable {
    public struct Options: Sendable, Equatable {
        /// BertNormalizer.clean_text: drop NUL, U+FFFD and control characters, map whitespace to ' '.
        public var cleanText = true
        /// BertNormalizer.handle_chinese_chars: surround CJK ideographs with spaces.
        public var handleChineseChars = true
        /// BertNormalizer.strip_accents; `nil` follows `lowercase`, as upstream does.
        public var stripAccents: Bool? = nil
        public var lowercase = true
        public var maxInputCharsPerWord = 100
        public var continuingSubwordPrefix = "##"
        /// Total length including [CLS] and [SEP] (sentence-transformers' max_seq_length).
        public var maxLength = 256
        public init() {}
    }

    public let options: Options
    public let unkID: Int
    public let clsID: Int
    public let sepID: Int
    public let padID: Int
    /// Keyed by UTF-8 bytes: Swift `String` equality is canonical equivalence, upstream's is
    /// byte equality.
    private let vocab: [[UInt8]: Int]
    private let prefix: [UInt8]

    public var vocabularySize: Int { vocab.count }
    /// The largest token id, to check against the model's embedding table.
    public var maxTokenID: Int { vocab.values.max() ?? 0 }

    public init(vocabulary: [String: Int], options: Options = Options(),
                unk: String = "[UNK]", cls: String = "[CLS]", sep: String = "[SEP]", pad: String = "[PAD]") throws {
        func id(_ t: String) throws -> Int {
            guard let i = vocabulary[t] else { throw TokenizerError.malformed(URL(fileURLWithPath: "vocabulary"), "no token '\(t)'") }
            return i
        }
        var bytes: [[UInt8]: Int] = [:]
        for (k, v) in vocabulary { bytes[Array(k.utf8)] = v }
        vocab = bytes
        prefix = Array(options.continuingSubwordPrefix.utf8)
        self.options = options
        unkID = try id(unk); clsID = try id(cls); sepID = try id(sep); padID = try id(pad)
    }

    /// Loads from a model folder: `tokenizer.json` when present (vocabulary and normalizer
    /// settings), else `vocab.txt` with `tokenizer_config.json` (do_lower_case, strip_accents,
    /// tokenize_chinese_chars). `maxLength` is sentence-transformers' max_seq_length.
    public init(directory: URL, maxLength: Int) throws {
        let fm = FileManager.default
        let tokURL = directory.appendingPathComponent("tokenizer.json")
        let vocabURL = directory.appendingPathComponent("vocab.txt")
        var options = Options()
        options.maxLength = maxLength
        var vocabulary: [String: Int] = [:]
        var unk = "[UNK]"
        if fm.fileExists(atPath: tokURL.path) {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: tokURL)) as? [String: Any] else {
                throw TokenizerError.malformed(tokURL, "not a JSON object")
            }
            guard let model = obj["model"] as? [String: Any], let vocabAny = model["vocab"] as? [String: Any] else {
                throw TokenizerError.malformed(tokURL, "no model.vocab object")
            }
            if let type = model["type"] as? String, type != "WordPiece" {
                throw TokenizerError.malformed(tokURL, "model.type is \(type), expected WordPiece")
            }
            for (k, v) in vocabAny {
                guard let n = (v as? NSNumber)?.intValue else { throw TokenizerError.malformed(tokURL, "model.vocab['\(k)'] is not an integer") }
                vocabulary[k] = n
            }
            if let u = model["unk_token"] as? String { unk = u }
            if let m = (model["max_input_chars_per_word"] as? NSNumber)?.intValue { options.maxInputCharsPerWord = m }
            if let p = model["continuing_subword_prefix"] as? String { options.continuingSubwordPrefix = p }
            if let norm = obj["normalizer"] as? [String: Any] {
                guard norm["type"] as? String == "BertNormalizer" else {
                    throw TokenizerError.malformed(tokURL, "normalizer.type is \(norm["type"] ?? "null"), expected BertNormalizer")
                }
                if let b = norm["clean_text"] as? Bool { options.cleanText = b }
                if let b = norm["handle_chinese_chars"] as? Bool { options.handleChineseChars = b }
                if let b = norm["lowercase"] as? Bool { options.lowercase = b }
                options.stripAccents = norm["strip_accents"] as? Bool
            }
        } else if fm.fileExists(atPath: vocabURL.path) {
            guard let text = try? String(contentsOf: vocabURL, encoding: .utf8) else {
                throw TokenizerError.malformed(vocabURL, "not UTF-8 text")
            }
            // One token per line, id = line index (transformers' load_vocab keeps the line's text
            // minus its trailing newline).
            var lines = text.components(separatedBy: "\n")
            if lines.last == "" { lines.removeLast() }
            for (i, line) in lines.enumerated() {
                let t = line.hasSuffix("\r") ? String(line.dropLast()) : line
                if vocabulary[t] == nil { vocabulary[t] = i }
            }
            let cfgURL = directory.appendingPathComponent("tokenizer_config.json")
            if fm.fileExists(atPath: cfgURL.path) {
                guard let cfg = try? JSONSerialization.jsonObject(with: Data(contentsOf: cfgURL)) as? [String: Any] else {
                    throw TokenizerError.malformed(cfgURL, "not a JSON object")
                }
                if let b = cfg["do_lower_case"] as? Bool { options.lowercase = b }
                if let b = cfg["tokenize_chinese_chars"] as? Bool { options.handleChineseChars = b }
                options.stripAccents = cfg["strip_accents"] as? Bool
                if let u = cfg["unk_token"] as? String { unk = u }
            }
        } else {
            throw TokenizerError.missing(directory.appendingPathComponent("vocab.txt"))
        }
        do {
            try self.init(vocabulary: vocabulary, options: options, unk: unk)
        } catch TokenizerError.malformed(_, let why) {
            throw TokenizerError.malformed(fm.fileExists(atPath: tokURL.path) ? tokURL : vocabURL, why)
        }
    }

    /// Token ids `[CLS] pieces… [SEP]`, the pieces truncated to `maxLength - 2`.
    public func encode(_ text: String) -> [Int] {
        var ids = [clsID]
        let budget = max(0, options.maxLength - 2)
        outer: for word in preTokenize(normalize(text)) {
            for id in wordPiece(word) {
                if ids.count - 1 >= budget { break outer }
                ids.append(id)
            }
        }
        ids.append(sepID)
        return ids
    }

    /// The word pieces as strings (without special tokens), for inspection and tests.
    public func tokenize(_ text: String) -> [String] {
        let inverse = Dictionary(vocab.map { ($0.value, String(decoding: $0.key, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        return preTokenize(normalize(text)).flatMap { wordPiece($0) }.map { inverse[$0] ?? "?" }
    }

    // MARK: normalisation (BertNormalizer)

    /// Upstream order: clean text, pad CJK, strip accents (NFD, drop Mn), lowercase.
    func normalize(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            if options.cleanText {
                if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
                if Self.isWhitespace(s) { out.append(" "); continue }
            }
            if options.handleChineseChars && Self.isChineseChar(s) {
                out.append(" "); out.append(s); out.append(" ")
                continue
            }
            out.append(s)
        }
        if options.stripAccents ?? options.lowercase {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: out)
            // NFD then drop nonspacing marks (Mn), as `do_strip_accents` does.
            let nfd = String(view).decomposedStringWithCanonicalMapping
            out = nfd.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
        }
        if options.lowercase {
            // Per-scalar full lowercase mapping (Rust `char::to_lowercase`: no context rules,
            // so a final Σ lowercases to σ).
            var lowered: [Unicode.Scalar] = []
            lowered.reserveCapacity(out.count)
            for s in out {
                if s.isASCII {
                    lowered.append(s.value >= 65 && s.value <= 90 ? Unicode.Scalar(UInt8(s.value + 32)) : s)
                } else {
                    lowered.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
                }
            }
            out = lowered
        }
        return out
    }

    /// `\t \n \r` count as whitespace, as does Unicode White_Space (Rust `char::is_whitespace`).
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    /// Upstream `is_control`: `\t \n \r` are not; otherwise general category C* (Cc, Cf, Cs, Co, Cn).
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// The CJK Unified Ideographs blocks BERT splits per character (upstream `is_chinese_char`).
    static func isChineseChar(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    /// ASCII punctuation (which includes `$+<=>^`|~`) or Unicode P* (upstream `is_bert_punc`).
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII {
            let v = s.value
            return (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v)
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    // MARK: pre-tokenisation (BertPreTokenizer)

    /// Splits on whitespace (removed) and punctuation (each mark its own word).
    func preTokenize(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for (i, s) in scalars.enumerated() {
            if s.properties.isWhitespace {
                if start < i { words.append(scalars[start..<i]) }
                start = i + 1
            } else if Self.isPunctuation(s) {
                if start < i { words.append(scalars[start..<i]) }
                words.append(scalars[i...i])
                start = i + 1
            }
        }
        if start < scalars.count { words.append(scalars[start...]) }
        return words
    }

    // MARK: WordPiece

    /// Greedy longest-match-first; a word with any unmatched remainder, or longer than
    /// `maxInputCharsPerWord` characters, becomes a single [UNK] (upstream `WordPiece::tokenize`).
    func wordPiece(_ word: ArraySlice<Unicode.Scalar>) -> [Int] {
        let chars = Array(word)
        if chars.count > options.maxInputCharsPerWord { return [unkID] }
        // UTF-8 offsets of each character, so a candidate piece is a byte range.
        var utf8: [UInt8] = []
        var offsets: [Int] = [0]
        for c in chars {
            UTF8.encode(c) { utf8.append($0) }
            offsets.append(utf8.count)
        }
        var pieces: [Int] = []
        var start = 0
        var piece: [UInt8] = []
        while start < chars.count {
            var end = chars.count
            var found: Int?
            while start < end {
                piece.removeAll(keepingCapacity: true)
                if start > 0 { piece.append(contentsOf: prefix) }
                piece.append(contentsOf: utf8[offsets[start]..<offsets[end]])
                if let id = vocab[piece] { found = id; break }
                end -= 1
            }
            guard let id = found else { return [unkID] }
            pieces.append(id)
            start = end
        }
        return pieces
    }
}
