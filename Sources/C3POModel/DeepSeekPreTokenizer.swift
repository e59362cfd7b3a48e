import Foundation

/// The five Split regexes of the DeepSeek LLM pre-tokenizer (deepseek-llm, DeepSeekMoE-16B,
/// DeepSeek-V2): in its tokenizer.json they run in this order, each Isolated, followed by
/// Digits(individual_digits: true) and ByteLevel(add_prefix_space: false, use_regex: false).
/// The same list is in llama.cpp's llama-vocab.cpp (LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM), where the
/// last Split is approximated by `\p{N}+`.
///
/// The character classes are spelled with escapes: several of their code points (U+1F7D,
/// U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) have canonical singleton decompositions, and an NFC
/// round trip through an editor would silently turn the class into another (invalid) one.
enum DeepSeekPattern: CaseIterable, Sendable {
    /// `[\r\n]`
    case newline
    /// `\s?[A-Za-zµÀ-Ö...]+`: Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee ... letters.
    case letters
    /// `\s?[!-/:-~！-／：-～‘-‟　-。]+`: ASCII punctuation (and, as `:-~` covers them, ASCII
    /// letters), full-width forms, curly quotes, ideographic space and full stop.
    case punctuation
    /// `\s+$`
    case trailingSpace
    /// `[一-龥ࠀ-一가-퟿]+`: CJK ideographs, U+0800...U+4E00 (kana among them), Hangul.
    case cjk

    static let lettersClass =
        "A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}"
        + "\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}"
        + "\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}"
        + "\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}"
        + "\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}"
        + "\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}"
        + "\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}"
        + "\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}"
        + "\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}"
        + "\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}"
    static let punctuationClass = "!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}"
    static let cjkClass = "\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}"

    /// The regex exactly as tokenizer.json holds it.
    var source: String {
        switch self {
        case .newline: return "[\r\n]"
        case .letters: return #"\s?["# + Self.lettersClass + "]+"
        case .punctuation: return #"\s?["# + Self.punctuationClass + "]+"
        case .trailingSpace: return #"\s+$"#
        case .cjk: return "[" + Self.cjkClass + "]+"
        }
    }

    private static let letterSet = ScalarRanges(lettersClass)
    private static let punctuationSet = ScalarRanges(punctuationClass)
    private static let cjkSet = ScalarRanges(cjkClass)

    /// Leftmost non-overlapping matches (Oniguruma's find_iter).
    func matches(in t: [Unicode.Scalar]) -> [Range<Int>] {
        let n = t.count
        var out: [Range<Int>] = []
        switch self {
        case .newline:
            for (i, s) in t.enumerated() where s == "\r" || s == "\n" { out.append(i..<(i + 1)) }
        case .letters, .punctuation:
            let set = self == .letters ? Self.letterSet : Self.punctuationSet
            var i = 0
            while i < n {
                // \s? is greedy: with a space first, then without.
                if CharClass.isSpace(t[i]) && i + 1 < n && set.contains(t[i + 1]) {
                    let end = SplitPattern.run(t, i + 1, set.contains)
                    out.append(i..<end); i = end
                } else if set.contains(t[i]) {
                    let end = SplitPattern.run(t, i, set.contains)
                    out.append(i..<end); i = end
                } else {
                    i += 1
                }
            }
        case .trailingSpace:
            // `\s+` must reach the end of the piece for `$` to hold: the trailing whitespace run.
            // (Oniguruma's `$` also holds before a "\n", but the first Split has already isolated
            // every "\r" and "\n".)
            var k = n
            while k > 0 && CharClass.isSpace(t[k - 1]) { k -= 1 }
            if k < n { out.append(k..<n) }
        case .cjk:
            var i = 0
            while i < n {
                if Self.cjkSet.contains(t[i]) {
                    let end = SplitPattern.run(t, i, Self.cjkSet.contains)
                    out.append(i..<end); i = end
                } else {
                    i += 1
                }
            }
        }
        return out
    }
}

/// A bracket expression's body (`a-z`, single characters) as disjoint, sorted code point ranges.
struct ScalarRanges: Sendable {
    private let ranges: [ClosedRange<UInt32>]
    private let ascii: [Bool]

    init(_ body: String) {
        let s = Array(body.unicodeScalars)
        var rs: [ClosedRange<UInt32>] = []
        var i = 0
        while i < s.count {
            if i + 2 < s.count && s[i + 1] == "-" {
                rs.append(s[i].value...max(s[i].value, s[i + 2].value)); i += 3
            } else {
                rs.append(s[i].value...s[i].value); i += 1
            }
        }
        // Union of overlapping or touching ranges (the CJK class has U+0800-U+4E00 and U+4E00-U+9FA5).
        var merged: [ClosedRange<UInt32>] = []
        for r in rs.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, r.lowerBound <= last.upperBound &+ 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else {
                merged.append(r)
            }
        }
        ranges = merged
        ascii = (0..<128).map { c in merged.contains { $0.contains(UInt32(c)) } }
    }

    @inline(__always) func contains(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 128 { return ascii[Int(v)] }
        // The last range starting at or below v is the only one that can hold it.
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].lowerBound <= v { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 && ranges[lo - 1].contains(v)
    }
}
