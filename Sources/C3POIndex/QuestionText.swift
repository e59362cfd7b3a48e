import Foundation

/// The text of a record that is embedded: the question part of a prompt
/// (rule documented in Index/README.md, "Which text is embedded").
///
/// 1. A known instruction prefix is removed: the published code's "Answer with only a
///    single letter (A, B, C, or D) representing the correct option. Do not explain
///    your reasoning. Just output the letter of the answer. " (any letter list).
/// 2. Few-shot examples are dropped: only the text after the last earlier
///    `Answer: X` line is kept, then only the last block that starts with a stem label
///    (`Question:`, `Goal:`, `Fill in the blank:`), without that label.
/// 3. The options are cut: everything from the first line that starts (after spaces)
///    with `A.` or `A)`; a framing line right before them ("Choose the best
///    continuation:") and a trailing `Answer:` line go too.
/// 4. Whitespace is trimmed. If nothing is left, the whole prompt (trimmed) is used.
///
/// For the OLMES prompts of `Datasets/*.jsonl` this gives exactly the `question`
/// field (tested on every dataset file).
public enum QuestionText {
    /// Start and end of the published code's instruction prefix.
    static let instructionStart = "Answer with only a single letter"
    static let instructionEnd = "Just output the letter of the answer."
    /// Stem labels of OLMES prompts, in the order they are tried.
    static let stemLabels = ["Question:", "Goal:", "Fill in the blank:"]
    /// Lines that introduce the options without being part of the question.
    static let framingLines = ["Choose the best continuation:"]

    public static func extract(from prompt: String) -> String {
        var text = Substring(prompt.trimmingCharacters(in: .whitespacesAndNewlines))
        // 1. Instruction prefix.
        if text.hasPrefix(instructionStart), let end = text.range(of: instructionEnd) {
            text = Substring(text[end.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines))
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        // 2a. Few-shot: drop everything up to the last `Answer:` line that has an answer
        // after it and is not the prompt's final line.
        let isAnswerLine = { (l: Substring) in l.trimmingCharacters(in: .whitespaces).hasPrefix("Answer:") }
        if let lastAnswered = lines.indices.dropLast().last(where: { i in
            isAnswerLine(lines[i]) && lines[i].trimmingCharacters(in: .whitespaces) != "Answer:"
        }) {
            lines = Array(lines[(lastAnswered + 1)...])
        }
        // 2b. The last stem label at the start of a line.
        if let start = lines.indices.last(where: { i in stemLabels.contains { lines[i].hasPrefix($0) } }),
           let label = stemLabels.first(where: { lines[start].hasPrefix($0) }) {
            lines = Array(lines[start...])
            lines[0] = lines[0].dropFirst(label.count)
        }
        // 3. Options, framing line and trailing "Answer:".
        if let first = lines.indices.dropFirst().first(where: { i in
            let t = lines[i].drop(while: { $0 == " " || $0 == "\t" })
            return t == "A." || t.hasPrefix("A. ") || t.hasPrefix("A) ")
        }) {
            lines = Array(lines[..<first])
        } else if let last = lines.last, last.trimmingCharacters(in: .whitespaces) == "Answer:" {
            lines.removeLast()
        }
        while let last = lines.last,
              last.trimmingCharacters(in: .whitespaces).isEmpty || framingLines.contains(last.trimmingCharacters(in: .whitespaces)) {
            lines.removeLast()
        }
        let question = lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        return question.isEmpty ? prompt.trimmingCharacters(in: .whitespacesAndNewlines) : question
    }

    /// The answer labels of a prompt's options ("A", "B", ...): the letters of the last
    /// run of option lines `A. ...`/`A) ...`, `B. ...`, ... in order (lines between them
    /// that start with no next letter continue an option). nil when fewer than two are
    /// found. Archive records carry no label set; this is the one their prompt shows.
    public static func labels(in prompt: String) -> [String]? {
        let lines = prompt.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.drop(while: { $0 == " " || $0 == "\t" }) }
        func isOption(_ line: Substring, _ letter: Character) -> Bool {
            guard line.first == letter else { return false }
            let rest = line.dropFirst()
            return rest == "." || rest.hasPrefix(". ") || rest.hasPrefix(") ")
        }
        guard let start = lines.indices.last(where: { isOption(lines[$0], "A") }) else { return nil }
        var labels = ["A"]
        for line in lines[(start + 1)...] {
            guard let last = labels.last?.unicodeScalars.first, last.value < 0x5A,
                  let next = Unicode.Scalar(last.value + 1) else { break }
            if isOption(line, Character(next)) { labels.append(String(next)) }
            else if line.hasPrefix("Answer:") { break }
        }
        return labels.count >= 2 ? labels : nil
    }
}
