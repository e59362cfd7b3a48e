import Foundation

/// JSON Lines input with errors that name the file and line.
public enum JSONLines {
    public struct LineError: Error, CustomStringConvertible {
        public let url: URL
        public let line: Int
        public let reason: String
        public init(url: URL, line: Int, reason: String) { self.url = url; self.line = line; self.reason = reason }
        public var description: String { "\(url.path):\(line): \(reason)" }
    }

    /// The non-blank lines of a UTF-8 text file with their 1-based line numbers; a line longer
    /// than `maxLineBytes` is refused by number.
    public static func lines(of url: URL, maxLineBytes: Int = .max) throws -> [(number: Int, text: Substring)] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw FileError.missing(url, "file") }
        let file = try MappedFile(url: url) // (Foundation's Data(contentsOf:) leaks 4 KiB on an empty file)
        let data = Data(bytes: file.base, count: file.count)
        guard let text = String(data: data, encoding: .utf8) else {
            // Locate the first invalid line for the message.
            var line = 1, start = 0
            let bytes = [UInt8](data)
            for (i, b) in bytes.enumerated() where b == 0x0a {
                if String(bytes: bytes[start..<i], encoding: .utf8) == nil { break }
                line += 1; start = i + 1
            }
            throw LineError(url: url, line: line, reason: "not valid UTF-8")
        }
        var out: [(Int, Substring)] = []
        var n = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            let t = raw.hasSuffix("\r") ? raw.dropLast() : raw
            if t.utf8.count > maxLineBytes { throw LineError(url: url, line: n, reason: "\(t.utf8.count) bytes, longer than the limit of \(maxLineBytes) bytes a line") }
            if t.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            out.append((n, t))
        }
        return out
    }

    /// Decodes each line as `T`.
    public static func decode<T: Decodable>(_ type: T.Type, from url: URL, maxLineBytes: Int = .max) throws -> [T] {
        let decoder = JSONDecoder()
        return try lines(of: url, maxLineBytes: maxLineBytes).map { number, text in
            do {
                return try JSONDecoding.decode(T.self, from: Data(text.utf8), decoder: decoder)
            } catch let DecodingError.keyNotFound(key, _) {
                throw LineError(url: url, line: number, reason: "missing field '\(key.stringValue)'")
            } catch let DecodingError.typeMismatch(_, ctx) where ctx.codingPath.isEmpty {
                throw LineError(url: url, line: number, reason: malformedReason(text))
            } catch let DecodingError.typeMismatch(_, ctx) {
                throw LineError(url: url, line: number, reason: "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
            } catch let DecodingError.valueNotFound(_, ctx) {
                throw LineError(url: url, line: number, reason: "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' is null")
            } catch {
                throw LineError(url: url, line: number, reason: malformedReason(text))
            }
        }
    }

    /// Why a line that did not decode is not JSON, with its column ("not valid JSON: expected
    /// ',' or '}' at column 27"); Foundation's decoder says neither.
    public static func malformedReason(_ text: Substring) -> String {
        do {
            let value = try JSONScanner.parse(Data(text.utf8))
            if case .object = value { return "not a record of the expected form" }
            return "not a JSON object"
        } catch let e as JSONScanner.Error {
            return "not valid JSON: \(e.message) at column \(e.column)"
        } catch {
            return "not valid JSON"
        }
    }

    /// Encodes values one per line, keys sorted, slashes unescaped.
    public static func encode<T: Encodable>(_ values: [T]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = Data()
        for v in values { out.append(try encoder.encode(v)); out.append(0x0a) }
        return out
    }
}
