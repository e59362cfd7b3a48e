import Foundation

// Pre-tokenizers of the byte-level BPE family, as the Rust `tokenizers` crate runs them
// (tokenizers/src/pre_tokenizers/{byte_level,split}.rs). The crate evaluates its regexes
// with Oniguruma; the two patterns that byte-level BPE checkpoints use are scanned here by
// hand, alternative by alternative, reproducing Oniguruma's leftmost-first backtracking.
// Both patterns cover every character, so the matches tile the text.

/// Character classes with Oniguruma's Unicode meaning.
enum CharClass {
    /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return (s.value | 0x20) >= 0x61 && (s.value | 0x20) <= 0x7a }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// `\p{N}`: general categories Nd, Nl, No.
    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s.value >= 0x30 && s.value <= 0x39 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// `\s`: the Unicode White_Space property.
    @inline(__always) static func isSpace(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s.value == 0x20 || (s.value >= 0x09 && s.value <= 0x0d) }
        return s.properties.isWhitespace
    }

    /// `[^\s\p{L}\p{N}]`
    @inline(__always) static func isOther(_ s: Unicode.Scalar) -> Bool { !isSpace(s) && !isLetter(s) && !isNumber(s) }
}

/// The regexes we know how to scan.
enum SplitPattern: Sendable {
    /// GPT-2 (ByteLevel's own, `use_regex: true`):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// cl100k-style, used by OLMo 2's dolma2 tokenizer:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case cl100k

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let cl100kSource = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(source: String) {
        switch source {
        case Self.gpt2Source: self = .gpt2
        case Self.cl100kSource: self = .cl100k
        default: return nil
        }
    }

    /// Splits `text` into the pattern's consecutive matches (ranges over `text`).
    func split(_ text: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        let n = text.count
        while i < n {
            let end = self == .gpt2 ? Self.matchGPT2(text, i) : Self.matchCL100K(text, i)
            out.append(i..<end)
            i = end
        }
        return out
    }

    @inline(__always) private static func run(_ t: [Unicode.Scalar], _ i: Int, _ p: (Unicode.Scalar) -> Bool) -> Int {
        var j = i
        while j < t.count && p(t[j]) { j += 1 }
        return j
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive; returns the end or nil.
    private static func contraction(_ t: [Unicode.Scalar], _ i: Int, caseInsensitive: Bool) -> Int? {
        guard t[i] == "'", i + 1 < t.count else { return nil }
        func at(_ k: Int) -> Unicode.Scalar? {
            guard k < t.count else { return nil }
            let c = t[k]
            if caseInsensitive, c.value >= 0x41, c.value <= 0x5a, let l = Unicode.Scalar(c.value + 0x20) { return l }
            return c
        }
        switch at(i + 1) {
        case "s", "t", "m", "d": return i + 2
        case "r": return at(i + 2) == "e" ? i + 3 : nil
        case "v": return at(i + 2) == "e" ? i + 3 : nil
        case "l": return at(i + 2) == "l" ? i + 3 : nil
        default: return nil
        }
    }

    /// `\s+(?!\S)|\s+` at a whitespace position: the run minus its last character when a
    /// non-space follows and the run is longer than one (the lookahead backtracks by one).
    @inline(__always) private static func spaces(_ t: [Unicode.Scalar], _ i: Int) -> Int {
        let j = run(t, i, CharClass.isSpace)
        if j == t.count || j - i == 1 { return j }
        return j - 1
    }

    static func matchGPT2(_ t: [Unicode.Scalar], _ i: Int) -> Int {
        if let e = contraction(t, i, caseInsensitive: false) { return e }
        let c = t[i]
        let hasNext = i + 1 < t.count
        if c == " " && hasNext {
            let d = t[i + 1]
            if CharClass.isLetter(d) { return run(t, i + 1, CharClass.isLetter) }
            if CharClass.isNumber(d) { return run(t, i + 1, CharClass.isNumber) }
            if CharClass.isOther(d) { return run(t, i + 1, CharClass.isOther) }
        }
        if CharClass.isLetter(c) { return run(t, i, CharClass.isLetter) }
        if CharClass.isNumber(c) { return run(t, i, CharClass.isNumber) }
        if CharClass.isOther(c) { return run(t, i, CharClass.isOther) }
        return spaces(t, i)
    }

    static func matchCL100K(_ t: [Unicode.Scalar], _ i: Int) -> Int {
        if let e = contraction(t, i, caseInsensitive: true) { return e }
        let c = t[i]
        let hasNext = i + 1 < t.count
        let isCRLF: (Unicode.Scalar) -> Bool = { $0 == "\r" || $0 == "\n" }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if hasNext && !isCRLF(c) && !CharClass.isLetter(c) && !CharClass.isNumber(c) && CharClass.isLetter(t[i + 1]) {
            return run(t, i + 1, CharClass.isLetter)
        }
        if CharClass.isLetter(c) { return run(t, i, CharClass.isLetter) }
        // \p{N}{1,3}
        if CharClass.isNumber(c) { return min(run(t, i, CharClass.isNumber), i + 3) }
        // ?[^\s\p{L}\p{N}]+[\r\n]*
        if c == " " && hasNext && CharClass.isOther(t[i + 1]) { return run(t, run(t, i + 1, CharClass.isOther), isCRLF) }
        if CharClass.isOther(c) { return run(t, run(t, i, CharClass.isOther), isCRLF) }
        // \s*[\r\n]+ : the whitespace run up to (and including) its last \r or \n.
        let j = run(t, i, CharClass.isSpace)
        var k = j
        while k > i && !isCRLF(t[k - 1]) { k -= 1 }
        if k > i { return k }
        return spaces(t, i)
    }
}

/// GPT-2's reversible byte → printable character table (`bytes_to_unicode`).
enum ByteLevelAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        var bs: [Int] = Array(0x21...0x7e) + Array(0xa1...0xac) + Array(0xae...0xff)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b); cs.append(256 + n); n += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Unicode.Scalar(UInt32(c)) ?? " " }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    /// The UTF-8 bytes of `text`, each mapped to its printable stand-in.
    static func encode(_ text: Substring.UnicodeScalarView) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        for s in text { for b in String(s).utf8 { out.append(byteToScalar[Int(b)]) } }
        return out
    }
}
