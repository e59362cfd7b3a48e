import C3POModel
import Foundation
import XCTest

/// Tokenizers of the MoE families against the Rust `tokenizers` library. Fixtures and goldens are
/// made by Scripts/make-tokenizer-fixtures (tokenizers 0.23): a tokenizer.json per family built
/// with the real file's structure, and the ids the library gives for each text.
final class FamilyTokenizerTests: XCTestCase {
    struct Case: Decodable { var text: String; var ids: [Int]; var decoded: String }

    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizers")
    }

    func goldens() throws -> [String: [Case]] {
        try JSONDecoder().decode([String: [Case]].self, from: Data(contentsOf: Self.directory.appendingPathComponent("goldens.json")))
    }

    /// Every golden text encodes to the library's ids, and decodes to the library's text.
    func check(_ family: String, expecting kind: AnyClass) throws {
        let tok = try TokenizerLoader.load(Self.directory.appendingPathComponent("\(family).json"))
        XCTAssertTrue(type(of: tok) == kind, "\(family): loaded as \(type(of: tok)), expected \(kind)")
        let cases = try XCTUnwrap(goldens()[family], "no goldens for \(family)")
        XCTAssertGreaterThan(cases.count, 55)
        var failures = 0
        for c in cases {
            let ids = tok.encode(c.text)
            if ids != c.ids {
                failures += 1
                XCTFail("\(family): \(c.text.debugDescription): got \(ids), expected \(c.ids)")
            }
            let decoded = try XCTUnwrap(tok as? TokenDecoding).decode(c.ids, skipSpecialTokens: true)
            XCTAssertEqual(Array(decoded.unicodeScalars), Array(c.decoded.unicodeScalars),
                           "\(family): decode(\(c.ids)) = \(decoded.debugDescription), expected \(c.decoded.debugDescription)")
        }
        print("\(family): \(cases.count - failures)/\(cases.count) texts encode to the golden ids")
    }

    func testQwen2MatchesRustTokenizers() throws { try check("qwen2", expecting: ByteLevelBPETokenizer.self) }

    func testDeepSeekMatchesRustTokenizers() throws { try check("deepseek", expecting: ByteLevelBPETokenizer.self) }

    func testMixtralLegacyMatchesRustTokenizers() throws { try check("mixtral", expecting: SentencePieceBPETokenizer.self) }

    func testMixtralMetaspaceMatchesRustTokenizers() throws { try check("mixtral-metaspace", expecting: SentencePieceBPETokenizer.self) }

    func testMetaspaceAlwaysSplitMatchesRustTokenizers() throws { try check("metaspace-always", expecting: SentencePieceBPETokenizer.self) }

    // Variants (no real family) for the model options and Split behaviors the families above leave unused.
    func testUnknownTokenFusedMatchesRustTokenizers() throws { try check("sp-unk-fused", expecting: SentencePieceBPETokenizer.self) }

    func testPartialByteFallbackMatchesRustTokenizers() throws { try check("sp-ascii-bytes", expecting: SentencePieceBPETokenizer.self) }

    func testSplitBehaviorsMatchRustTokenizers() throws { try check("split-behaviors", expecting: ByteLevelBPETokenizer.self) }

    /// The label token the engine scores is the one the Rust library puts after "Answer:" in the
    /// full text: `ĠB` for byte-level BPE, `▁B` (not `▁▁B`) for SentencePiece-style BPE.
    func testLabelContinuationIsTheTokenThatFollowsTheAnswerPrompt() throws {
        let prompt = "Question: What is 2+2?\n A. 3\n B. 4\nAnswer:"
        for family in ["qwen2", "deepseek", "mixtral", "mixtral-metaspace"] {
            let cases = try XCTUnwrap(goldens()[family])
            let before = try XCTUnwrap(cases.first { $0.text == prompt }?.ids, family)
            let after = try XCTUnwrap(cases.first { $0.text == prompt + " B" }?.ids, family)
            XCTAssertEqual(Array(after.prefix(before.count)), before, "\(family): the prompt's ids are a prefix")
            let tok = try TokenizerLoader.load(Self.directory.appendingPathComponent("\(family).json"))
            XCTAssertEqual(tok.continuationIDs("B"), Array(after.dropFirst(before.count)), "\(family): label token")
        }
    }

    func testEveryGoldenFamilyHasATest() throws {
        XCTAssertEqual(Set(try goldens().keys), ["qwen2", "deepseek", "mixtral", "mixtral-metaspace", "metaspace-always",
                                                 "sp-unk-fused", "sp-ascii-bytes", "split-behaviors"])
    }

    func testSpecialTokensAndByteFallbackInMixtral() throws {
        let tok = try XCTUnwrap(TokenizerLoader.load(Self.directory.appendingPathComponent("mixtral.json")) as? SentencePieceBPETokenizer)
        let bos = try XCTUnwrap(tok.tokenID("<s>"))
        XCTAssertEqual(tok.encode("").first, bos, "the template adds <s>")
        XCTAssertEqual(tok.encode("a b", addSpecialTokens: false), Array(tok.encode("a b").dropFirst()))
        // U+1F642 is not in the small vocabulary: its four UTF-8 bytes come out as <0xF0> <0x9F> <0x99> <0x82>.
        let ids = tok.encode("\u{1F642}")
        XCTAssertEqual(ids.dropFirst().compactMap { tok.token(for: $0) }.suffix(4), ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"])
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), "\u{1F642}")
    }

    /// Canonically equivalent tokens are distinct tokens: the small Mixtral vocabulary holds both
    /// "Ω" (U+2126 OHM SIGN) and "Ω" (U+03A9), "é" and "e" + U+0301 (Foundation's JSON readers and
    /// Swift's String keys would merge each pair).
    func testCanonicallyEquivalentTokensStayApart() throws {
        let tok = try XCTUnwrap(TokenizerLoader.load(Self.directory.appendingPathComponent("mixtral.json")) as? SentencePieceBPETokenizer)
        for (a, b) in [("\u{2126}", "\u{03A9}"), ("e\u{301}", "\u{E9}"), ("\u{1F7D}", "\u{3CE}")] {
            let ia = try XCTUnwrap(tok.tokenID(a), "\(a.debugDescription) not in the vocabulary")
            let ib = try XCTUnwrap(tok.tokenID(b), "\(b.debugDescription) not in the vocabulary")
            XCTAssertNotEqual(ia, ib, "\(a.debugDescription) and \(b.debugDescription) are two tokens")
            XCTAssertEqual(tok.token(for: ia).map { Array($0.unicodeScalars) }, Array(a.unicodeScalars))
            XCTAssertEqual(tok.token(for: ib).map { Array($0.unicodeScalars) }, Array(b.unicodeScalars))
        }
    }

    // MARK: the OLMo tokenizers through the loader

    func testOLMoTokenizersLoadThroughTheLoader() throws {
        let moe = MoEFixtures.directory
        let goldens = try JSONDecoder().decode([String: [Case0]].self, from: Data(contentsOf: moe.appendingPathComponent("tokenizer-goldens.json")))
        for (name, file) in [("neox-olmo", "tokenizers/neox-olmo.json"), ("dolma2", "tokenizers/dolma2.json"), ("trained", "olmoe-f32/tokenizer.json")] {
            let tok = try TokenizerLoader.load(moe.appendingPathComponent(file))
            XCTAssertTrue(tok is ByteLevelBPETokenizer, "\(name) loaded as \(type(of: tok))")
            for c in try XCTUnwrap(goldens[name]) {
                XCTAssertEqual(tok.encode(c.text), c.ids, "\(name): \(c.text.debugDescription)")
            }
        }
    }

    struct Case0: Decodable { var text: String; var ids: [Int] }

    // MARK: refusals by name

    /// A small byte-level tokenizer.json with `edit` applied, written to a temporary file.
    func crafted(_ edit: (inout [String: Any]) -> Void) throws -> URL {
        var json: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "ab": 2], "merges": ["a b"]],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            "post_processor": NSNull(),
        ]
        edit(&json)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return url
    }

    func assertRefused(_ expected: String, file: StaticString = #filePath, line: UInt = #line, _ edit: (inout [String: Any]) -> Void) throws {
        let url = try crafted(edit)
        XCTAssertThrowsError(try TokenizerLoader.load(url), file: file, line: line) { error in
            guard case let TokenizerError.unsupported(at, why) = error else {
                return XCTFail("expected TokenizerError.unsupported, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(at, url, file: file, line: line)
            XCTAssertTrue(why.contains(expected), "message \(why.debugDescription) does not name \(expected.debugDescription)", file: file, line: line)
        }
    }

    func testCraftedTokenizerLoads() throws {
        let tok = try TokenizerLoader.load(crafted { _ in })
        XCTAssertEqual(tok.encode("ab"), [2])
    }

    func testUnsupportedComponentsAreRefusedByName() throws {
        try assertRefused("pre_tokenizer.type 'Whitespace' is not supported") { $0["pre_tokenizer"] = ["type": "Whitespace"] }
        try assertRefused("pre_tokenizer.pretokenizers[1].type 'Punctuation' is not supported") {
            $0["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [["type": "Digits"], ["type": "Punctuation"], ["type": "ByteLevel"]]]
        }
        try assertRefused("pre_tokenizer.pretokenizers[0].pattern.Regex '\\w+' is not supported") {
            $0["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": "\\w+"], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false]]]
        }
        try assertRefused("normalizer.type 'Lowercase' is not supported") { $0["normalizer"] = ["type": "Lowercase"] }
        try assertRefused("normalizer.normalizers[1].type 'NFKC' is not supported") {
            $0["normalizer"] = ["type": "Sequence", "normalizers": [["type": "NFC"], ["type": "NFKC"]]]
        }
        try assertRefused("model.type 'WordPiece' is not supported") { $0["model"] = ["type": "WordPiece", "vocab": ["a": 0]] }
        try assertRefused("model.dropout 0.1 is not supported") { j in
            var m = j["model"] as? [String: Any] ?? [:]; m["dropout"] = 0.1; j["model"] = m
        }
        try assertRefused("model.continuing_subword_prefix '##' is not supported") { j in
            var m = j["model"] as? [String: Any] ?? [:]; m["continuing_subword_prefix"] = "##"; j["model"] = m
        }
        try assertRefused("post_processor.type 'RobertaProcessing' is not supported") { $0["post_processor"] = ["type": "RobertaProcessing"] }
        try assertRefused("truncation is not supported") { $0["truncation"] = ["max_length": 8] }
        try assertRefused("pre_tokenizer.prepend_scheme 'sometimes' is not supported") {
            $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "sometimes", "split": false]
        }
        try assertRefused("decoder.decoders[0].type 'WordPiece' is not supported") {
            $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false]
            $0["decoder"] = ["type": "Sequence", "decoders": [["type": "WordPiece"]]]
        }
    }

    /// The DeepSeek letter class holds U+1F7D where its NFC form is U+03CE: a file whose regex went
    /// through NFC is another (in Oniguruma, invalid) pattern and must not be taken for DeepSeek's.
    func testDeepSeekPatternIsMatchedScalarByScalar() throws {
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Self.directory.appendingPathComponent("deepseek.json"))) as? [String: Any])
        let pre = try XCTUnwrap(root["pre_tokenizer"] as? [String: Any])
        var steps = try XCTUnwrap(pre["pretokenizers"] as? [[String: Any]])
        let letters = try XCTUnwrap((steps[1]["pattern"] as? [String: Any])?["Regex"] as? String)
        XCTAssertTrue(letters.unicodeScalars.contains("\u{1F7D}"))
        let nfc = letters.precomposedStringWithCanonicalMapping
        XCTAssertNotEqual(Array(nfc.unicodeScalars), Array(letters.unicodeScalars))
        steps[1]["pattern"] = ["Regex": nfc]
        try assertRefused("pre_tokenizer.pretokenizers[1].pattern.Regex") { j in
            j = root
            j["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": steps]
        }
    }
}
