import C3POCore
import Foundation
import XCTest

/// JSONScanner against Python's `json` module: Tests/Fixtures/json/cases.json, written by
/// `Scripts/make-json-fixtures` (validity per `json.loads(strict=True)`, canonical form per
/// `json.dumps(v, sort_keys=True)`, with the scanner's documented deviations recorded there).
final class JSONScannerTests: XCTestCase {
    /// Foundation's JSONDecoder traps on 513 `[` ending the input (a nesting error at the end of
    /// the buffer; the fuzz target index_folder's find): JSONDecoding refuses such nesting first.
    func testDeepNestingIsRefusedBeforeFoundationSeesIt() throws {
        for n in [129, 513, 100_000] {
            XCTAssertThrowsError(try JSONDecoding.decode([Int].self, from: Data(repeating: 0x5B, count: n)), "\(n)") {
                XCTAssertTrue("\($0)".contains("nesting deeper than 128"), "\($0)")
            }
        }
        let nested = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        XCTAssertNoThrow(try JSONDecoding.decode(AnyDecodable.self, from: Data(nested.utf8)))
        // Brackets inside strings do not count.
        XCTAssertEqual(try JSONDecoding.decode([String].self, from: Data(("[\"" + String(repeating: "[", count: 600) + "\\\"\"]").utf8)).first?.count, 601)
        // A dataset line that deep: refused by line, naming the file.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-deep-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(repeating: 0x5B, count: 513).write(to: url)
        XCTAssertThrowsError(try MCDataset.load(url)) { XCTAssertTrue("\($0)".contains(url.lastPathComponent + ":1: "), "\($0)") }
    }

    /// Any JSON value, decoded and dropped.
    struct AnyDecodable: Decodable {
        init(from decoder: Decoder) throws {
            if var a = try? decoder.unkeyedContainer() { while !a.isAtEnd { _ = try a.decode(AnyDecodable.self) } }
        }
    }

    struct Case {
        let name: String
        let bytes: [UInt8]
        let valid: Bool
        let canonical: String?
    }

    static func loadCases() throws -> [Case] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/json/cases.json")
        // Foundation reads the fixture file: the oracle file is not read by the code under test.
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let rows = try XCTUnwrap(root["cases"] as? [[String: Any]])
        return try rows.map { row in
            let hex = try XCTUnwrap(row["input_hex"] as? String)
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                bytes.append(try XCTUnwrap(UInt8(hex[i..<j], radix: 16)))
                i = j
            }
            let valid = (row["ours_valid"] as? Bool) ?? (row["valid"] as? Bool ?? false)
            let canonical = (row["ours_canonical"] as? String) ?? (row["canonical"] as? String)
            return Case(name: try XCTUnwrap(row["name"] as? String), bytes: bytes, valid: valid, canonical: valid ? canonical : nil)
        }
    }

    // MARK: Python-style canonical form of our tree (json.dumps(v, sort_keys=True))

    static func canonical(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .integer(i): return String(i)
        case let .double(d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
            return "\(d)" // compared numerically, so Swift's shortest form is fine
        case let .string(s): return quote(s)
        case let .array(items): return "[" + items.map(canonical).joined(separator: ", ") + "]"
        case let .object(members):
            // Last duplicate wins; keys sorted by code point (Python's str order).
            var last: [[UInt32]: (String, JSONValue)] = [:]
            for m in members { last[m.key.unicodeScalars.map(\.value)] = (m.key, m.value) }
            let keys = last.keys.sorted { $0.lexicographicallyPrecedes($1) }
            return "{" + keys.map { k in quote(last[k]!.0) + ": " + canonical(last[k]!.1) }.joined(separator: ", ") + "}"
        }
    }

    /// json.dumps's string form with ensure_ascii=True (py_encode_basestring_ascii).
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value >= 0x20 && u.value < 0x7F { out.unicodeScalars.append(u); continue }
                for unit in String(u).utf16 { out += String(format: "\\u%04x", unit) }
            }
        }
        return out + "\""
    }

    /// Splits a canonical text into tokens: strings, numbers/NaN/Infinity, punctuation.
    static func tokens(_ s: String) -> [String] {
        var out: [String] = []
        let c = Array(s.unicodeScalars)
        var i = 0
        while i < c.count {
            let u = c[i]
            if u == "\"" {
                var j = i + 1
                while c[j] != "\"" { j += c[j] == "\\" ? 2 : 1 }
                out.append(String(String.UnicodeScalarView(c[i...j]))); i = j + 1
            } else if u == " " {
                i += 1
            } else if "[]{},:".unicodeScalars.contains(u) {
                out.append(String(u)); i += 1
            } else {
                var j = i
                while j < c.count, !"[]{},: ".unicodeScalars.contains(c[j]) { j += 1 }
                out.append(String(String.UnicodeScalarView(c[i..<j]))); i = j
            }
        }
        return out
    }

    /// Equal token by token; numbers compared as Doubles (both sides correctly rounded).
    static func sameCanonical(_ ours: String, _ python: String) -> Bool {
        let a = tokens(ours), b = tokens(python)
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            guard let dx = Double(x), let dy = Double(y) else { return false }
            if !(dx == dy || (dx.isNaN && dy.isNaN)) { return false }
        }
        return true
    }

    func testCorpusAgreesWithPythonJSON() throws {
        let cases = try Self.loadCases()
        XCTAssertGreaterThan(cases.count, 150)
        var failures: [String] = []
        for c in cases {
            do {
                let v = try JSONScanner.parse(Data(c.bytes))
                if !c.valid {
                    failures.append("\(c.name): accepted, Python refuses")
                } else if let want = c.canonical {
                    let got = Self.canonical(v)
                    if !Self.sameCanonical(got, want) { failures.append("\(c.name): got \(got.prefix(120)), Python \(want.prefix(120))") }
                }
            } catch let e as JSONScanner.Error {
                if c.valid { failures.append("\(c.name): refused (\(e)), Python accepts") }
            }
        }
        print("JSON corpus: \(cases.count) cases, \(failures.count) disagreements with Python")
        XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
    }

    func testErrorsCarryOffsetLineAndColumn() {
        let text = "{\n  \"a\": [1, 2],\n  \"b\": tru\n}"
        XCTAssertThrowsError(try JSONScanner.parse(Data(text.utf8))) { error in
            guard let e = error as? JSONScanner.Error else { return XCTFail("\(error)") }
            XCTAssertEqual(e.line, 3, "\(e)")
            XCTAssertEqual(e.column, 8, "\(e)")
            XCTAssertEqual(e.offset, 24, "\(e)")
            XCTAssertTrue(e.description.contains("line 3, column 8 (byte offset 24)"), "\(e)")
        }
        XCTAssertThrowsError(try JSONScanner.parse(Data("[1, 2".utf8))) {
            XCTAssertTrue("\($0)".contains("unexpected end of input"), "\($0)")
        }
        XCTAssertThrowsError(try JSONScanner.parse(Data("{} x".utf8))) {
            XCTAssertTrue("\($0)".contains("after the top-level value") && "\($0)".contains("byte offset 3"), "\($0)")
        }
    }

    func testDepthLimitIs512() throws {
        let ok = String(repeating: "[", count: JSONScanner.maxDepth) + String(repeating: "]", count: JSONScanner.maxDepth)
        XCTAssertNoThrow(try JSONScanner.parse(Data(ok.utf8)))
        let deep = "[" + ok + "]"
        XCTAssertThrowsError(try JSONScanner.parse(Data(deep.utf8))) {
            XCTAssertTrue("\($0)".contains("nesting deeper than 512") && "\($0)".contains("byte offset 512"), "\($0)")
        }
    }

    func testNonFiniteExtensionAndNumbers() throws {
        let v = try JSONScanner.parse(Data(#"[NaN, Infinity, -Infinity, 0.0123456, 1e-7, 12, -0, 1e400]"#.utf8))
        guard case let .array(a) = v, a.count == 8 else { return XCTFail("\(v)") }
        XCTAssertTrue(a[0].number?.isNaN == true)
        XCTAssertEqual(a[1].number, .infinity)
        XCTAssertEqual(a[2].number, -.infinity)
        // Reference values: Python float("0.0123456"), float("1e-7") (correctly rounded, as Swift's Double(String)).
        XCTAssertEqual(a[3].number, Double("0.0123456"))
        XCTAssertEqual(a[4].number, Double("1e-7"))
        guard case .integer(12) = a[5], case .integer(0) = a[6] else { return XCTFail("\(a)") }
        XCTAssertEqual(a[7].number, .infinity)
    }

    /// The pull API streams an object's members without building a tree.
    func testPullAPIStreamsMembers() throws {
        let text = #"{"layers": [{"layer": 1, "routing_weights": {"expert_1": 0.25, "expert_0": 0.75}}], "x": {"deep": [1, {"y": null}]}}"#
        var weights: [Double] = []
        var keys: [String] = []
        try Data(text.utf8).withUnsafeBytes { raw in
            var s = JSONScanner(raw)
            var c = try s.beginObject()
            while let k = try s.nextKey(&c) {
                guard k.equals("layers") else { try s.skipValue(); continue }
                var a = try s.beginArray()
                while try s.nextElement(&a) {
                    var o = try s.beginObject()
                    while let lk = try s.nextKey(&o) {
                        if lk.equals("routing_weights") {
                            var w = try s.beginObject()
                            while let ek = try s.nextKey(&w) { keys.append(ek.string); weights.append(try s.readDouble()) }
                        } else {
                            XCTAssertEqual(lk.string, "layer")
                            XCTAssertEqual(try s.readDouble(), 1)
                        }
                    }
                }
            }
            try s.finish()
        }
        XCTAssertEqual(keys, ["expert_1", "expert_0"])
        XCTAssertEqual(weights, [0.25, 0.75])
    }
}
