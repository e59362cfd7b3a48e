import C3POModel
import Foundation
import XCTest

/// Fixtures made by Scripts/make-moe-fixtures (goldens from the Python `tokenizers` 0.23 library).
enum MoEFixtures {
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/moe")
    }
}

final class TokenizerTests: XCTestCase {
    struct Case: Decodable { var text: String; var ids: [Int] }

    func goldens() throws -> [String: [Case]] {
        try JSONDecoder().decode([String: [Case]].self, from: Data(contentsOf: MoEFixtures.directory.appendingPathComponent("tokenizer-goldens.json")))
    }

    func check(_ name: String, _ file: URL, nfc: Bool) throws {
        let tok = try ByteLevelBPETokenizer(url: file)
        let cases = try XCTUnwrap(goldens()[name])
        XCTAssertGreaterThan(cases.count, 60)
        var failures = 0
        for c in cases {
            let ids = tok.encode(c.text)
            if ids != c.ids {
                failures += 1
                XCTFail("\(name): \(c.text.debugDescription): got \(ids), expected \(c.ids)")
            }
            // Round trip: the text as normalised (NFC where the tokenizer normalises).
            let expected = nfc ? c.text.precomposedStringWithCanonicalMapping : c.text
            XCTAssertEqual(tok.decode(ids), expected, "\(name): decode(encode(x)) != x for \(c.text.debugDescription)")
        }
        print("\(name): \(cases.count - failures)/\(cases.count) texts encode to the golden ids")
    }

    func testGPTNeoXOLMoTokenizerMatchesRustTokenizers() throws {
        try check("neox-olmo", MoEFixtures.directory.appendingPathComponent("tokenizers/neox-olmo.json"), nfc: true)
    }

    func testDolma2SplitTokenizerMatchesRustTokenizers() throws {
        try check("dolma2", MoEFixtures.directory.appendingPathComponent("tokenizers/dolma2.json"), nfc: false)
    }

    func testTrainedByteLevelBPEMatchesRustTokenizers() throws {
        try check("trained", MoEFixtures.directory.appendingPathComponent("olmoe-f32/tokenizer.json"), nfc: false)
    }

    func testSpecialTokensAreSplitOutFirst() throws {
        let tok = try ByteLevelBPETokenizer(url: MoEFixtures.directory.appendingPathComponent("tokenizers/neox-olmo.json"))
        let eot = try XCTUnwrap(tok.tokenID("<|endoftext|>"))
        let ids = tok.encode("a<|endoftext|>b")
        XCTAssertTrue(ids.contains(eot), "the special token must be one id, got \(ids)")
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), "ab")
    }

    func testBothMergeEncodingsGiveTheSameTokens() throws {
        // The same tiny vocabulary with merges as "a b" strings and as ["a", "b"] pairs.
        func make(_ merges: Any) throws -> ByteLevelBPETokenizer {
            let json: [String: Any] = [
                "model": ["type": "BPE", "vocab": ["h": 0, "e": 1, "l": 2, "o": 3, "he": 4, "ll": 5, "hell": 6, "hello": 7], "merges": merges],
                "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            ]
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("bpe-\(UUID().uuidString).json")
            try JSONSerialization.data(withJSONObject: json).write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            return try ByteLevelBPETokenizer(url: url)
        }
        let a = try make(["h e", "l l", "he ll", "hell o"])
        let b = try make([["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"]])
        XCTAssertEqual(a.encode("hello"), [7])
        XCTAssertEqual(b.encode("hello"), [7])
        XCTAssertEqual(a.encode("hell"), [6])
    }
}
