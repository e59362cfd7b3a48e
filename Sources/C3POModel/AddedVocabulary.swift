import Foundation

/// The `added_tokens` of a tokenizer.json, split out of the text before anything else runs
/// (tokenizers/src/tokenizer/added_vocabulary.rs): tokens with `normalized: false` are found in
/// the raw text, then each remaining piece is normalised and the `normalized: true` tokens (whose
/// content is normalised the same way first) are found in it.
struct AddedVocabulary: Sendable {
    struct Token: Sendable {
        var id: Int
        var content: String
        /// What is searched for: the content, normalised when `normalized`.
        var pattern: [Unicode.Scalar]
        var special: Bool
        var singleWord: Bool
        var lstrip: Bool
        var rstrip: Bool
        var normalized: Bool
    }

    enum Piece {
        case token(Int)
        /// Text between tokens; `start` is its offset in the text that was split.
        case text([Unicode.Scalar], start: Int)
    }

    let tokens: [Token]
    let byID: [Int: Token]
    /// First scalar → the tokens starting with it, longest first; one table per `normalized` flag.
    private let raw: [Unicode.Scalar: [Token]]
    private let normalizedOnes: [Unicode.Scalar: [Token]]

    init(json: Any?, normalizer: TextNormalizer, url: URL) throws {
        var tokens: [Token] = []
        for (i, a) in (json as? [[String: Any]] ?? []).enumerated() {
            guard let id = (a["id"] as? NSNumber)?.intValue, let content = a["content"] as? String, !content.isEmpty else {
                throw TokenizerError.malformed(url, "added_tokens[\(i)] has no id or content")
            }
            let special = a["special"] as? Bool ?? false
            let normalized = a["normalized"] as? Bool ?? !special
            let scalars = Array(content.unicodeScalars)
            tokens.append(Token(id: id, content: content, pattern: normalized ? normalizer.apply(scalars) : scalars, special: special,
                                singleWord: a["single_word"] as? Bool ?? false, lstrip: a["lstrip"] as? Bool ?? false,
                                rstrip: a["rstrip"] as? Bool ?? false, normalized: normalized))
        }
        self.tokens = tokens
        byID = Dictionary(tokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        func index(_ ts: [Token]) -> [Unicode.Scalar: [Token]] {
            var d: [Unicode.Scalar: [Token]] = [:]
            for t in ts { if let first = t.pattern.first { d[first, default: []].append(t) } }
            return d.mapValues { $0.sorted { $0.pattern.count > $1.pattern.count } }
        }
        raw = index(tokens.filter { !$0.normalized })
        normalizedOnes = index(tokens.filter { $0.normalized })
    }

    func id(of content: String) -> Int? {
        let scalars = Array(content.unicodeScalars)
        return tokens.first(where: { Array($0.content.unicodeScalars) == scalars })?.id
    }

    /// Leftmost-longest matching of the tokens with the given `normalized` flag (the crate's
    /// aho-corasick `MatchKind::LeftmostLongest`), honouring single_word, lstrip and rstrip.
    func split(_ text: [Unicode.Scalar], normalized: Bool) -> [Piece] {
        let candidates = normalized ? normalizedOnes : raw
        guard !text.isEmpty else { return [] }
        guard !candidates.isEmpty else { return [.text(text, start: 0)] }
        var out: [Piece] = []
        var start = 0, i = 0
        let n = text.count
        func isWord(_ s: Unicode.Scalar) -> Bool { CharClass.isLetter(s) || CharClass.isNumber(s) || s == "_" }
        while i < n {
            // The longest token matching at i (the table lists them longest first; ties keep file order).
            let tok = candidates[text[i]]?.first { $0.pattern.count <= n - i && text[i..<(i + $0.pattern.count)].elementsEqual($0.pattern) }
            guard let tok else { i += 1; continue }
            var lo = i, hi = i + tok.pattern.count
            if tok.singleWord && ((lo > 0 && isWord(text[lo - 1])) || (hi < n && isWord(text[hi]))) { i = hi; continue }
            if tok.lstrip { while lo > start && CharClass.isSpace(text[lo - 1]) { lo -= 1 } }
            if tok.rstrip { while hi < n && CharClass.isSpace(text[hi]) { hi += 1 } }
            if lo > start { out.append(.text(Array(text[start..<lo]), start: start)) }
            out.append(.token(tok.id))
            start = hi; i = hi
        }
        if start < n { out.append(.text(Array(text[start..<n]), start: start)) }
        return out
    }
}
