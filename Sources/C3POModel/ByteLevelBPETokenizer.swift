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
/// `tokenizers` crate for the GPT-2 / GPT-NeoX / OLMo family:
/// added tokens split out first (tokenizers/src/tokenizer/added_vocabulary.rs), then the
/// normaliser (NFC or none), the pre-tokeniser (ByteLevel with the GPT-2 regex, or
/// Sequence[Split(regex), ByteLevel(use_regex: false)]), BPE merges by rank
/// (tokenizers/src/models/bpe/word.rs: the lowest-ranked pair first, leftmost on ties),
/// and the post-processor's template (ByteLevel adds nothing).
public final class ByteLevelBPETokenizer: @unchecked Sendable {
    struct AddedToken {
        var id: Int
        var content: [Unicode.Scalar]
        var special: Bool
        var singleWord: Bool
        var lstrip: Bool
        var rstrip: Bool
        var normalized: Bool
    }

    enum PreTokenization { case byteLevel(addPrefixSpace: Bool, pattern: SplitPattern?), split(SplitPattern, addPrefixSpace: Bool) }

    public let vocabularySize: Int
    private let vocab: [String: Int]
    private let idToToken: [Int: String]
    /// (left id, right id) → (rank, merged id)
    private let merges: [UInt64: (rank: Int, id: Int)]
    private let added: [AddedToken]
    private let addedByID: [Int: AddedToken]
    private let nfc: Bool
    private let preTokenization: PreTokenization
    private let ignoreMerges: Bool
    private let prefixIDs: [Int]
    private let suffixIDs: [Int]
    private var cache: [String: [Int]] = [:]
    private let cacheLock = NSLock()

    public convenience init(url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw TokenizerError.malformed(url, "cannot read: \(error.localizedDescription)") }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.malformed(url, "not a JSON object")
        }
        try self.init(json: root, url: url)
    }

    init(json root: [String: Any], url: URL) throws {
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.malformed(url, "no 'model' object") }
        guard (model["type"] as? String ?? "BPE") == "BPE" else {
            throw TokenizerError.unsupported(url, "model.type '\(model["type"] ?? "")' (only BPE)")
        }
        if let p = model["continuing_subword_prefix"] as? String, !p.isEmpty {
            throw TokenizerError.unsupported(url, "model.continuing_subword_prefix '\(p)'")
        }
        if let s = model["end_of_word_suffix"] as? String, !s.isEmpty {
            throw TokenizerError.unsupported(url, "model.end_of_word_suffix '\(s)'")
        }
        if let d = model["dropout"] as? NSNumber, d.doubleValue > 0 { throw TokenizerError.unsupported(url, "model.dropout \(d)") }
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
        guard let vocabAny = model["vocab"] as? [String: Any] else { throw TokenizerError.malformed(url, "no model.vocab object") }
        var vocab: [String: Int] = [:]
        var idToToken: [Int: String] = [:]
        for (tok, v) in vocabAny {
            guard let id = (v as? NSNumber)?.intValue, id >= 0 else { throw TokenizerError.malformed(url, "model.vocab['\(tok)'] is not an id") }
            vocab[tok] = id
            idToToken[id] = tok
        }
        // Merges come as "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs (newer).
        guard let mergesAny = model["merges"] as? [Any] else { throw TokenizerError.malformed(url, "no model.merges array") }
        var merges: [UInt64: (rank: Int, id: Int)] = [:]
        merges.reserveCapacity(mergesAny.count)
        for (rank, m) in mergesAny.enumerated() {
            let pair: [String]
            if let s = m as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError.malformed(url, "model.merges[\(rank)] '\(s)' is not 'a b'") }
                pair = parts.map(String.init)
            } else if let a = m as? [String], a.count == 2 {
                pair = a
            } else {
                throw TokenizerError.malformed(url, "model.merges[\(rank)] is neither 'a b' nor [a, b]")
            }
            guard let l = vocab[pair[0]], let r = vocab[pair[1]], let n = vocab[pair[0] + pair[1]] else {
                throw TokenizerError.malformed(url, "model.merges[\(rank)] \(pair) has a part or result outside the vocabulary")
            }
            let key = UInt64(l) << 32 | UInt64(r)
            if merges[key] == nil { merges[key] = (rank, n) }
        }

        var added: [AddedToken] = []
        for (i, a) in (root["added_tokens"] as? [[String: Any]] ?? []).enumerated() {
            guard let id = (a["id"] as? NSNumber)?.intValue, let content = a["content"] as? String, !content.isEmpty else {
                throw TokenizerError.malformed(url, "added_tokens[\(i)] has no id or content")
            }
            added.append(AddedToken(id: id, content: Array(content.unicodeScalars), special: a["special"] as? Bool ?? false,
                                    singleWord: a["single_word"] as? Bool ?? false, lstrip: a["lstrip"] as? Bool ?? false,
                                    rstrip: a["rstrip"] as? Bool ?? false, normalized: a["normalized"] as? Bool ?? !(a["special"] as? Bool ?? false)))
            idToToken[id] = content
        }

        // Normaliser: none or NFC (a Sequence of those).
        func normalizerIsNFC(_ n: Any?, _ path: String) throws -> Bool {
            guard let n = n as? [String: Any] else { return false }
            switch n["type"] as? String {
            case "NFC": return true
            case "Sequence":
                var any = false
                for (i, s) in (n["normalizers"] as? [Any] ?? []).enumerated() { any = try normalizerIsNFC(s, "\(path).normalizers[\(i)]") || any }
                return any
            default: throw TokenizerError.unsupported(url, "\(path).type '\(n["type"] ?? "")' (only NFC)")
            }
        }
        nfc = try normalizerIsNFC(root["normalizer"], "normalizer")

        func byteLevel(_ p: [String: Any], _ path: String) throws -> (Bool, Bool) {
            (p["add_prefix_space"] as? Bool ?? true, p["use_regex"] as? Bool ?? true)
        }
        guard let pre = root["pre_tokenizer"] as? [String: Any] else { throw TokenizerError.unsupported(url, "no pre_tokenizer (expected ByteLevel)") }
        switch pre["type"] as? String {
        case "ByteLevel":
            let (prefix, regex) = try byteLevel(pre, "pre_tokenizer")
            preTokenization = .byteLevel(addPrefixSpace: prefix, pattern: regex ? .gpt2 : nil)
        case "Sequence":
            let steps = pre["pretokenizers"] as? [[String: Any]] ?? []
            guard steps.count == 2, steps[0]["type"] as? String == "Split", steps[1]["type"] as? String == "ByteLevel" else {
                throw TokenizerError.unsupported(url, "pre_tokenizer Sequence other than [Split, ByteLevel]")
            }
            let split = steps[0]
            guard let pat = split["pattern"] as? [String: Any], let source = pat["Regex"] as? String ?? pat["String"] as? String else {
                throw TokenizerError.malformed(url, "pre_tokenizer.pretokenizers[0].pattern has no Regex")
            }
            guard let pattern = SplitPattern(source: source) else {
                throw TokenizerError.unsupported(url, "pre_tokenizer.pretokenizers[0].pattern '\(source)' (known: the GPT-2 and cl100k patterns)")
            }
            // Our patterns match every character, so 'Isolated' and inverted 'Removed' both keep exactly the matches.
            let behavior = split["behavior"] as? String ?? ""
            let invert = split["invert"] as? Bool ?? false
            guard (behavior == "Removed" && invert) || (behavior == "Isolated" && !invert) else {
                throw TokenizerError.unsupported(url, "pre_tokenizer.pretokenizers[0] behavior '\(behavior)' invert \(invert)")
            }
            let (prefix, regex) = try byteLevel(steps[1], "pre_tokenizer.pretokenizers[1]")
            guard !regex else { throw TokenizerError.unsupported(url, "pre_tokenizer.pretokenizers[1].use_regex true after a Split") }
            preTokenization = .split(pattern, addPrefixSpace: prefix)
        default:
            throw TokenizerError.unsupported(url, "pre_tokenizer.type '\(pre["type"] ?? "")' (expected ByteLevel or Sequence)")
        }

        // Post-processor: ByteLevel adds nothing; TemplateProcessing's single template may add special tokens.
        var prefixIDs: [Int] = [], suffixIDs: [Int] = []
        func post(_ p: Any?, _ path: String) throws {
            guard let p = p as? [String: Any] else { return }
            switch p["type"] as? String {
            case "ByteLevel": return
            case "Sequence":
                for (i, s) in (p["processors"] as? [Any] ?? []).enumerated() { try post(s, "\(path).processors[\(i)]") }
            case "TemplateProcessing":
                let specials = p["special_tokens"] as? [String: [String: Any]] ?? [:]
                var seenSequence = false
                for piece in p["single"] as? [[String: Any]] ?? [] {
                    if piece["Sequence"] != nil { seenSequence = true; continue }
                    guard let st = piece["SpecialToken"] as? [String: Any], let name = st["id"] as? String,
                          let ids = specials[name]?["ids"] as? [NSNumber] else {
                        throw TokenizerError.malformed(url, "\(path).single has an unknown piece")
                    }
                    if seenSequence { suffixIDs += ids.map(\.intValue) } else { prefixIDs += ids.map(\.intValue) }
                }
            default:
                throw TokenizerError.unsupported(url, "\(path).type '\(p["type"] ?? "")'")
            }
        }
        try post(root["post_processor"], "post_processor")

        self.vocab = vocab
        self.idToToken = idToToken
        self.merges = merges
        self.added = added
        self.addedByID = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        self.prefixIDs = prefixIDs
        self.suffixIDs = suffixIDs
        vocabularySize = max((idToToken.keys.max() ?? -1) + 1, 0)
    }

    // MARK: encoding

    public func encode(_ text: String) -> [Int] {
        var ids = prefixIDs
        // Added tokens that match the raw text come out first; then those that match after normalising.
        for piece in splitAdded(Array(text.unicodeScalars), normalized: false) {
            switch piece {
            case let .token(id): ids.append(id)
            case let .text(scalars):
                let normalized = nfc ? Array(String(String.UnicodeScalarView(scalars)).precomposedStringWithCanonicalMapping.unicodeScalars) : scalars
                for inner in splitAdded(normalized, normalized: true) {
                    switch inner {
                    case let .token(id): ids.append(id)
                    case let .text(s): encodeSegment(s, into: &ids)
                    }
                }
            }
        }
        return ids + suffixIDs
    }

    public func tokenID(_ token: String) -> Int? {
        if let a = added.first(where: { String(String.UnicodeScalarView($0.content)) == token }) { return a.id }
        return vocab[token]
    }

    enum Piece { case token(Int), text([Unicode.Scalar]) }

    /// Leftmost-longest matching of the added tokens with the given `normalized` flag
    /// (the crate's aho-corasick `MatchKind::LeftmostLongest`), honouring single_word,
    /// lstrip and rstrip.
    private func splitAdded(_ text: [Unicode.Scalar], normalized: Bool) -> [Piece] {
        let candidates = added.filter { $0.normalized == normalized }
        guard !candidates.isEmpty, !text.isEmpty else { return text.isEmpty ? [] : [.text(text)] }
        var out: [Piece] = []
        var start = 0, i = 0
        let n = text.count
        func isWord(_ s: Unicode.Scalar) -> Bool { CharClass.isLetter(s) || CharClass.isNumber(s) || s == "_" }
        while i < n {
            var best: AddedToken?
            for c in candidates where c.content.count <= n - i && (best == nil || c.content.count > best!.content.count) {
                if text[i] == c.content[0] && Array(text[i..<(i + c.content.count)]) == c.content { best = c }
            }
            guard let tok = best else { i += 1; continue }
            var lo = i, hi = i + tok.content.count
            if tok.singleWord && ((lo > 0 && isWord(text[lo - 1])) || (hi < n && isWord(text[hi]))) { i = hi; continue }
            if tok.lstrip { while lo > start && CharClass.isSpace(text[lo - 1]) { lo -= 1 } }
            if tok.rstrip { while hi < n && CharClass.isSpace(text[hi]) { hi += 1 } }
            if lo > start { out.append(.text(Array(text[start..<lo]))) }
            out.append(.token(tok.id))
            start = hi; i = hi
        }
        if start < n { out.append(.text(Array(text[start..<n]))) }
        return out
    }

    private func encodeSegment(_ scalars: [Unicode.Scalar], into ids: inout [Int]) {
        guard !scalars.isEmpty else { return }
        var text = scalars
        let words: [Range<Int>]
        switch preTokenization {
        case let .byteLevel(addPrefixSpace, pattern):
            if addPrefixSpace && text.first != " " { text.insert(" ", at: 0) }
            words = pattern?.split(text) ?? [0..<text.count]
        case let .split(pattern, addPrefixSpace):
            // ByteLevel(use_regex: false) after a Split sees each split piece on its own and
            // prepends the space to every piece (pre_tokenizers/byte_level.rs).
            for r in pattern.split(text) {
                var w = Array(text[r])
                if addPrefixSpace && w.first != " " { w.insert(" ", at: 0) }
                bpe(ByteLevelAlphabet.encode(String(String.UnicodeScalarView(w)).unicodeScalars[...]), into: &ids)
            }
            return
        }
        for r in words {
            let word = String(String.UnicodeScalarView(text[r]))
            bpe(ByteLevelAlphabet.encode(word.unicodeScalars[...]), into: &ids)
        }
    }

    /// BPE over one pre-token's byte-level characters.
    private func bpe(_ chars: [Unicode.Scalar], into ids: inout [Int]) {
        let word = String(String.UnicodeScalarView(chars))
        if ignoreMerges, let id = vocab[word] { ids.append(id); return }
        cacheLock.lock()
        if let hit = cache[word] { cacheLock.unlock(); ids += hit; return }
        cacheLock.unlock()
        // Characters outside the vocabulary are dropped (no unk token in byte-level BPE).
        var symbols = chars.compactMap { vocab[String($0)] }
        while symbols.count > 1 {
            var bestRank = Int.max, bestPos = -1, bestID = 0
            for p in 0..<(symbols.count - 1) {
                if let m = merges[UInt64(symbols[p]) << 32 | UInt64(symbols[p + 1])], m.rank < bestRank {
                    bestRank = m.rank; bestPos = p; bestID = m.id
                }
            }
            if bestPos < 0 { break }
            symbols[bestPos] = bestID
            symbols.remove(at: bestPos + 1)
        }
        cacheLock.lock()
        if cache.count > 100_000 { cache.removeAll() }
        cache[word] = symbols
        cacheLock.unlock()
        ids += symbols
    }

    // MARK: decoding

    /// The text of `ids` (ByteLevel decoder: each token's characters mapped back to bytes,
    /// or the token's own UTF-8 where a character is outside the byte table, as added
    /// tokens are; then lossy UTF-8).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens, addedByID[id]?.special == true { continue }
            guard let tok = idToToken[id] else { continue }
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

    public func token(for id: Int) -> String? { idToToken[id] }
}
