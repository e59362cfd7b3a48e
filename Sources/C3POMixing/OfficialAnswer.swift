import Foundation

/// The answer letter of a generated text, by the published C3PO code's rules
/// (`extract_answer_option` in tianyi-lab/C3PO's olmoe_optimizer.py), applied to the decoded
/// prompt and continuation together, as that code does:
/// 1. After the first "Answer:": the first whitespace-separated word whose first character,
///    upper-cased, is A, B, C or D gives the letter (so "because" reads as B: the published rule).
/// 2. Else the first word that is, upper-cased, "A".."D", or "A." / "A)" .. (three characters at most).
/// 3. Else the first A-D of the upper-cased text that stands alone as a word (a non-word character
///    or the text's end on both sides; word characters are letters, digits and "_").
/// 4. Else no letter ("").
public enum OfficialAnswer {
    static let letters: Set<Character> = ["A", "B", "C", "D"]

    public static func extract(_ text: String) -> String {
        if let r = text.range(of: "Answer:") {
            for word in words(String(text[r.upperBound...])) {
                if let c = word.uppercased().first, letters.contains(c) { return String(c) }
            }
        }
        for word in words(text) {
            let w = word.uppercased()
            if w.count == 1, let c = w.first, letters.contains(c) { return w }
            if w.count <= 3, w.count >= 2, let c = w.first, letters.contains(c), [".", ")"].contains(w.dropFirst().first) {
                return String(c)
            }
        }
        let upper = Array(text.uppercased())
        func isWord(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" }
        for (i, c) in upper.enumerated() where letters.contains(c) {
            if (i == 0 || !isWord(upper[i - 1])) && (i + 1 == upper.count || !isWord(upper[i + 1])) { return String(c) }
        }
        return ""
    }

    /// Python's `str.split()`: runs of whitespace separate, none are kept.
    static func words(_ s: String) -> [Substring] {
        s.split(whereSeparator: { $0.isWhitespace })
    }
}
