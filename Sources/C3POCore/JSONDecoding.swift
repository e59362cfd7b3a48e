import Foundation

/// Foundation's `JSONDecoder`, for files made by others: their nesting is checked first.
/// Foundation stops at 512 levels, and a document that ends right at that depth (513 `[` and
/// nothing else) traps inside its error report instead of throwing (swift-foundation, Swift 6;
/// the fuzz target `index_folder`'s find). Real files nest a few levels; deeper than
/// `maxDepth` is refused here as `DecodingError.dataCorrupted`, which every caller already
/// reports as invalid JSON, naming its file.
public enum JSONDecoding {
    public static let maxDepth = 128

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, decoder: JSONDecoder = JSONDecoder()) throws -> T {
        if let depth = deeper(than: maxDepth, data) {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "nesting deeper than \(maxDepth) arrays/objects (\(depth) or more)"))
        }
        return try decoder.decode(T.self, from: data)
    }

    /// The depth reached when it passes `limit` (strings skipped, escapes honoured); nil when it never does.
    static func deeper(than limit: Int, _ data: Data) -> Int? {
        data.withUnsafeBytes { raw -> Int? in
            var depth = 0, inString = false, escaped = false
            for b in raw {
                if inString {
                    if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
                    continue
                }
                switch b {
                case 0x22: inString = true
                case 0x5B, 0x7B:
                    depth += 1
                    if depth > limit { return depth }
                case 0x5D, 0x7D: depth -= 1
                default: break
                }
            }
            return nil
        }
    }
}
