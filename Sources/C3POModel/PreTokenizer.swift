import Foundation

// Pre-tokenizers as the Rust `tokenizers` crate runs them (tokenizers/src/pre_tokenizers/
// {byte_level,split,digits,metaspace,sequence}.rs and NormalizedString::split in
// tokenizer/normalizer.rs). The crate evaluates Split regexes with Oniguruma; the patterns that
// real checkpoints use are recognised by their exact source string and scanned here by hand,
// alternative by alternative, reproducing Oniguruma's leftmost-first backtracking.

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

    /// `\p{N}` (and Rust's `char::is_numeric`): general categories Nd, Nl, No.
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

/// The Split patterns we know how to scan.
enum SplitPattern: Sendable, Equatable {
    /// GPT-2 (ByteLevel's own, `use_regex: true`):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// cl100k-style, used by OLMo 2's dolma2 tokenizer:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case cl100k
    /// Qwen2 / Qwen1.5 / Qwen3 (transformers' Qwen2Converter): cl100k with single digits, `\p{N}`.
    case qwen2
    /// One of the five Splits of the DeepSeek LLM / DeepSeekMoE / DeepSeek-V2 pre-tokenizer.
    case deepSeek(DeepSeekPattern)
    /// `{"String": ...}`: the literal text.
    case literal([Unicode.Scalar])

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let cl100kSource = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pattern whose Oniguruma source is exactly `source` (compared scalar by scalar: Swift's
    /// `==` on strings is canonical equivalence, which would confuse U+1F7D with U+03CE).
    init?(regex source: String) {
        let scalars = Array(source.unicodeScalars)
        if scalars == Array(Self.gpt2Source.unicodeScalars) { self = .gpt2; return }
        if scalars == Array(Self.cl100kSource.unicodeScalars) { self = .cl100k; return }
        if scalars == Array(Self.qwen2Source.unicodeScalars) { self = .qwen2; return }
        if let d = DeepSeekPattern.allCases.first(where: { Array($0.source.unicodeScalars) == scalars }) { self = .deepSeek(d); return }
        return nil
    }

    /// The leftmost non-overlapping matches in `t`, as Oniguruma's `find_iter` yields them.
    /// The GPT-2, cl100k and Qwen2 patterns match every character, so their matches tile `t`.
    func matches(in t: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        switch self {
        case .gpt2, .cl100k, .qwen2:
            var i = 0
            while i < t.count {
                let end: Int
                switch self {
                case .gpt2: end = Self.matchGPT2(t, i)
                case .cl100k: end = Self.matchCL100K(t, i, maxDigits: 3)
                default: end = Self.matchCL100K(t, i, maxDigits: 1)
                }
                out.append(i..<end)
                i = end
            }
        case let .deepSeek(d):
            out = d.matches(in: t)
        case let .literal(lit):
            guard !lit.isEmpty, lit.count <= t.count else { return [] }
            var i = 0
            while i + lit.count <= t.count {
                if t[i] == lit[0] && Array(t[i..<(i + lit.count)]) == lit { out.append(i..<(i + lit.count)); i += lit.count } else { i += 1 }
            }
        }
        return out
    }

    @inline(__always) static func run(_ t: [Unicode.Scalar], _ i: Int, _ p: (Unicode.Scalar) -> Bool) -> Int {
        var j = i
        while j < t.count && p(t[j]) { j += 1 }
        return j
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive; returns the end or nil.
    /// Oniguruma's case folding also maps U+017F (long s) to `s`.
    private static func contraction(_ t: [Unicode.Scalar], _ i: Int, caseInsensitive: Bool) -> Int? {
        guard t[i] == "'", i + 1 < t.count else { return nil }
        func at(_ k: Int) -> Unicode.Scalar? {
            guard k < t.count else { return nil }
            let c = t[k]
            guard caseInsensitive else { return c }
            if c.value >= 0x41, c.value <= 0x5a, let l = Unicode.Scalar(c.value + 0x20) { return l }
            if c.value == 0x17f { return "s" }
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

    /// The cl100k pattern with `\p{N}{1,maxDigits}` (3 for cl100k, 1 for Qwen2's `\p{N}`).
    static func matchCL100K(_ t: [Unicode.Scalar], _ i: Int, maxDigits: Int) -> Int {
        if let e = contraction(t, i, caseInsensitive: true) { return e }
        let c = t[i]
        let hasNext = i + 1 < t.count
        let isCRLF: (Unicode.Scalar) -> Bool = { $0 == "\r" || $0 == "\n" }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if hasNext && !isCRLF(c) && !CharClass.isLetter(c) && !CharClass.isNumber(c) && CharClass.isLetter(t[i + 1]) {
            return run(t, i + 1, CharClass.isLetter)
        }
        if CharClass.isLetter(c) { return run(t, i, CharClass.isLetter) }
        // \p{N}{1,3} or \p{N}
        if CharClass.isNumber(c) { return min(run(t, i, CharClass.isNumber), i + maxDigits) }
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

/// `SplitDelimiterBehavior` of the crate: what happens to the pattern's matches.
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// NormalizedString::split: `matches` (sorted, non-overlapping ranges over 0..<count) and the
    /// gaps between them, each flagged as a match (flipped by `invert`), turned into the kept
    /// pieces. Empty pieces are dropped, as PreTokenizedString::split drops them.
    func pieces(count: Int, matches: [Range<Int>], invert: Bool) -> [Range<Int>] {
        guard count > 0 else { return [] }
        var flagged: [(range: Range<Int>, isMatch: Bool)] = []
        var prev = 0
        for m in matches {
            if m.lowerBound > prev { flagged.append((prev..<m.lowerBound, invert)) }
            flagged.append((m, !invert))
            prev = m.upperBound
        }
        if prev < count { flagged.append((prev..<count, invert)) }

        var kept: [Range<Int>] = []
        switch self {
        case .isolated:
            kept = flagged.map(\.range)
        case .removed:
            kept = flagged.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            // Runs of matches (and runs of non-matches) merge into one piece each.
            var previous = false
            for f in flagged {
                if f.isMatch == previous, let last = kept.last { kept[kept.count - 1] = last.lowerBound..<f.range.upperBound } else { kept.append(f.range) }
                previous = f.isMatch
            }
        case .mergedWithPrevious:
            var previous = false
            for f in flagged {
                if f.isMatch && !previous, let last = kept.last { kept[kept.count - 1] = last.lowerBound..<f.range.upperBound } else { kept.append(f.range) }
                previous = f.isMatch
            }
        case .mergedWithNext:
            // The same fold, walking backwards, so a match joins the piece after it.
            var previous = false
            for f in flagged.reversed() {
                if f.isMatch && !previous, let last = kept.last { kept[kept.count - 1] = f.range.lowerBound..<last.upperBound } else { kept.append(f.range) }
                previous = f.isMatch
            }
            kept.reverse()
        }
        return kept.filter { !$0.isEmpty }
    }
}

/// A piece of text on its way through the pre-tokenizer. `atOrigin`: the piece starts at offset 0
/// of the original input (what Metaspace's `prepend_scheme: "first"` looks at).
struct TextPiece {
    var text: [Unicode.Scalar]
    var atOrigin: Bool
}

/// Metaspace's `prepend_scheme`.
enum PrependScheme: String, Sendable { case always, first, never }

/// One pre-tokenizer of a (flattened) Sequence.
enum PreTokenizerStep: Sendable {
    case split(SplitPattern, SplitBehavior, invert: Bool)
    /// Digits: every `\p{N}` character on its own (`individual_digits`) or runs of them.
    case digits(individual: Bool)
    /// ByteLevel: optional prefix space, optional GPT-2 split, then each UTF-8 byte mapped to
    /// its printable stand-in (the model's alphabet).
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// Metaspace: spaces become `replacement`, which is prepended per `prepend`, and optionally
    /// splits before every `replacement`.
    case metaspace(replacement: Unicode.Scalar, prepend: PrependScheme, split: Bool)

    var isByteLevel: Bool { if case .byteLevel = self { return true } else { return false } }

    func apply(_ pieces: [TextPiece]) -> [TextPiece] {
        var out: [TextPiece] = []
        out.reserveCapacity(pieces.count)
        func cut(_ p: TextPiece, _ ranges: [Range<Int>]) {
            for r in ranges { out.append(TextPiece(text: Array(p.text[r]), atOrigin: p.atOrigin && r.lowerBound == 0)) }
        }
        for p in pieces {
            switch self {
            case let .split(pattern, behavior, invert):
                cut(p, behavior.pieces(count: p.text.count, matches: pattern.matches(in: p.text), invert: invert))
            case let .digits(individual):
                var ms: [Range<Int>] = []
                for (i, s) in p.text.enumerated() where CharClass.isNumber(s) { ms.append(i..<(i + 1)) }
                cut(p, (individual ? SplitBehavior.isolated : .contiguous).pieces(count: p.text.count, matches: ms, invert: false))
            case let .byteLevel(addPrefixSpace, useRegex):
                var w = p.text
                if addPrefixSpace && w.first != " " { w.insert(" ", at: 0) }
                let ranges = useRegex ? SplitBehavior.isolated.pieces(count: w.count, matches: SplitPattern.gpt2.matches(in: w), invert: false)
                                      : (w.isEmpty ? [] : [0..<w.count])
                for r in ranges {
                    out.append(TextPiece(text: ByteLevelAlphabet.encode(w[r]), atOrigin: p.atOrigin && r.lowerBound == 0))
                }
            case let .metaspace(replacement, prepend, split):
                var w = p.text.map { $0 == " " ? replacement : $0 }
                let startsWithIt = w.first == replacement
                if !startsWithIt && (prepend == .always || (prepend == .first && p.atOrigin)) { w.insert(replacement, at: 0) }
                let q = TextPiece(text: w, atOrigin: p.atOrigin)
                if split {
                    var ms: [Range<Int>] = []
                    for (i, s) in w.enumerated() where s == replacement { ms.append(i..<(i + 1)) }
                    cut(q, SplitBehavior.mergedWithNext.pieces(count: w.count, matches: ms, invert: false))
                } else if !w.isEmpty {
                    out.append(q)
                }
            }
        }
        return out
    }

    /// The steps of `pre_tokenizer` (a Sequence flattened), refusing what we do not run by name.
    static func parse(_ json: Any?, url: URL, path: String = "pre_tokenizer") throws -> [PreTokenizerStep] {
        guard let json, !(json is NSNull) else { return [] }
        guard let p = json as? [String: Any] else { throw TokenizerError.malformed(url, "\(path) is not an object") }
        let type = p["type"] as? String ?? ""
        func bool(_ key: String, _ fallback: Bool) throws -> Bool {
            guard let v = p[key], !(v is NSNull) else { return fallback }
            guard let b = v as? Bool else { throw TokenizerError.malformed(url, "\(path).\(key) is not a boolean") }
            return b
        }
        switch type {
        case "Sequence":
            guard let steps = p["pretokenizers"] as? [Any] else { throw TokenizerError.malformed(url, "\(path).pretokenizers is not an array") }
            var out: [PreTokenizerStep] = []
            for (i, s) in steps.enumerated() { out += try parse(s, url: url, path: "\(path).pretokenizers[\(i)]") }
            return out
        case "Split":
            guard let pat = p["pattern"] as? [String: Any] else { throw TokenizerError.malformed(url, "\(path).pattern is not an object") }
            let pattern: SplitPattern
            if let source = pat["Regex"] as? String {
                guard let known = SplitPattern(regex: source) else {
                    throw TokenizerError.unsupported(url, "\(path).pattern.Regex '\(source)' is not supported (known: the GPT-2, cl100k, Qwen2 and DeepSeek LLM patterns)")
                }
                pattern = known
            } else if let literal = pat["String"] as? String {
                pattern = .literal(Array(literal.unicodeScalars))
            } else {
                throw TokenizerError.malformed(url, "\(path).pattern has neither Regex nor String")
            }
            let name = p["behavior"] as? String ?? ""
            guard let behavior = SplitBehavior(rawValue: name) else {
                throw TokenizerError.unsupported(url, "\(path).behavior '\(name)' is not supported (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)")
            }
            return [.split(pattern, behavior, invert: try bool("invert", false))]
        case "Digits":
            return [.digits(individual: try bool("individual_digits", false))]
        case "ByteLevel":
            return [.byteLevel(addPrefixSpace: try bool("add_prefix_space", true), useRegex: try bool("use_regex", true))]
        case "Metaspace":
            let rep = p["replacement"] as? String ?? "\u{2581}"
            guard rep.unicodeScalars.count == 1, let replacement = rep.unicodeScalars.first else {
                throw TokenizerError.unsupported(url, "\(path).replacement '\(rep)' is not supported (one character)")
            }
            let scheme: PrependScheme
            if let s = p["prepend_scheme"] as? String {
                guard let known = PrependScheme(rawValue: s) else {
                    throw TokenizerError.unsupported(url, "\(path).prepend_scheme '\(s)' is not supported (supported: always, first, never)")
                }
                scheme = known
            } else {
                // Files from before prepend_scheme carry add_prefix_space (true: always).
                scheme = try bool("add_prefix_space", true) ? .always : .never
            }
            return [.metaspace(replacement: replacement, prepend: scheme, split: try bool("split", true))]
        default:
            throw TokenizerError.unsupported(url, "\(path).type '\(type)' is not supported (supported: ByteLevel, Split, Sequence[...], Metaspace, Digits)")
        }
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
    static func encode(_ text: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for s in text { for b in String(s).utf8 { out.append(byteToScalar[Int(b)]) } }
        return out
    }
}
