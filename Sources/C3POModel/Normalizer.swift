import Foundation

/// The `normalizer` of a tokenizer.json, as the Rust crate applies it (tokenizers/src/normalizers/
/// {unicode,prepend,replace,utils}.rs): a flattened Sequence of NFC, Prepend and Replace.
struct TextNormalizer: Sendable {
    enum Step: Sendable {
        case nfc
        /// Prepend: `text` in front of a non-empty input.
        case prepend([Unicode.Scalar])
        /// Replace with a String pattern: every non-overlapping occurrence, left to right.
        case replace([Unicode.Scalar], with: [Unicode.Scalar])
    }

    let steps: [Step]

    var isEmpty: Bool { steps.isEmpty }

    func apply(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var t = text
        for step in steps {
            switch step {
            case .nfc:
                t = Array(String(String.UnicodeScalarView(t)).precomposedStringWithCanonicalMapping.unicodeScalars)
            case let .prepend(p):
                if !t.isEmpty { t = p + t }
            case let .replace(pattern, content):
                guard !pattern.isEmpty, t.count >= pattern.count else { continue }
                var out: [Unicode.Scalar] = []
                out.reserveCapacity(t.count)
                var i = 0
                while i < t.count {
                    if i + pattern.count <= t.count && t[i] == pattern[0] && Array(t[i..<(i + pattern.count)]) == pattern {
                        out += content; i += pattern.count
                    } else {
                        out.append(t[i]); i += 1
                    }
                }
                t = out
            }
        }
        return t
    }

    static func parse(_ json: Any?, url: URL) throws -> TextNormalizer {
        var steps: [Step] = []
        func walk(_ n: Any?, _ path: String) throws {
            guard let n, !(n is NSNull) else { return }
            guard let o = n as? [String: Any] else { throw TokenizerError.malformed(url, "\(path) is not an object") }
            let type = o["type"] as? String ?? ""
            switch type {
            case "NFC":
                steps.append(.nfc)
            case "Sequence":
                guard let list = o["normalizers"] as? [Any] else { throw TokenizerError.malformed(url, "\(path).normalizers is not an array") }
                for (i, s) in list.enumerated() { try walk(s, "\(path).normalizers[\(i)]") }
            case "Prepend":
                guard let p = o["prepend"] as? String else { throw TokenizerError.malformed(url, "\(path).prepend is not a string") }
                steps.append(.prepend(Array(p.unicodeScalars)))
            case "Replace":
                guard let pattern = o["pattern"] as? [String: Any] else { throw TokenizerError.malformed(url, "\(path).pattern is not an object") }
                guard let content = o["content"] as? String else { throw TokenizerError.malformed(url, "\(path).content is not a string") }
                if let r = pattern["Regex"] as? String {
                    throw TokenizerError.unsupported(url, "\(path).pattern.Regex '\(r)' is not supported (Replace takes a String pattern)")
                }
                guard let s = pattern["String"] as? String else { throw TokenizerError.malformed(url, "\(path).pattern has no String") }
                steps.append(.replace(Array(s.unicodeScalars), with: Array(content.unicodeScalars)))
            default:
                throw TokenizerError.unsupported(url, "\(path).type '\(type)' is not supported (supported: NFC, Prepend, Replace, Sequence[...])")
            }
        }
        try walk(json, "normalizer")
        return TextNormalizer(steps: steps)
    }
}
