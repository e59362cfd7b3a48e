import C3POCore
import Foundation

/// `model.vocab` of a tokenizer.json read key by key, byte for byte.
///
/// Foundation's JSON readers build Swift dictionaries, whose `String` keys compare by canonical
/// equivalence: "Ω" (U+2126) and "Ω" (U+03A9), or "é" and "e" + U+0301, become one entry, where
/// the Rust crate keeps two tokens. A SentencePiece vocabulary trained without normalisation can
/// hold both, so the vocabulary is read again from the raw bytes with `JSONScanner`.
struct ExactVocab {
    var entries: [(token: [UInt8], id: Int)]
}

enum ExactVocabReader {
    /// The entries of the top-level `model.vocab` object, in file order; nil when there is none.
    static func read(_ data: Data) throws -> ExactVocab? {
        try data.withUnsafeBytes { raw -> ExactVocab? in
            var s = JSONScanner(raw)
            guard try s.peek() == .object else { return nil }
            var found: ExactVocab?
            var top = try s.beginObject()
            while let key = try s.nextKey(&top) {
                guard key.equals("model"), try s.peek() == .object else { try s.skipValue(); continue }
                var model = try s.beginObject()
                while let key = try s.nextKey(&model) {
                    guard key.equals("vocab"), try s.peek() == .object else { try s.skipValue(); continue }
                    var entries: [(token: [UInt8], id: Int)] = []
                    var vocab = try s.beginObject()
                    while let token = try s.nextKey(&vocab) {
                        let bytes = token.hasEscapes ? Array(token.string.utf8) : Array(token.raw)
                        let id = try s.readDouble()
                        guard id >= 0, id < 2_147_483_648, id == id.rounded() else { throw s.error("model.vocab id \(id) is not a token id") }
                        entries.append((bytes, Int(id)))
                    }
                    found = ExactVocab(entries: entries)
                }
            }
            return found
        }
    }
}
