import C3POCore
import C3POEmbedding
import Foundation
import XCTest

final class WordPieceTokenizerTests: XCTestCase {
    /// Token ids must equal BertTokenizerFast's exactly (special tokens, truncation to 256),
    /// on accents, ligatures, CJK, emoji, control characters, odd whitespace and long inputs.
    func testIDsEqualHuggingFaceFastTokenizer() throws {
        let golden = try EmbedderGolden.load()
        let tok = try WordPieceTokenizer(directory: C3POPaths.defaultEmbedder, maxLength: golden.maxSeqLength)
        XCTAssertEqual(golden.sentences.count, golden.inputIDs.count)
        var mismatches = 0
        for (s, expected) in zip(golden.sentences, golden.inputIDs) {
            let got = tok.encode(s)
            if got != expected {
                mismatches += 1
                XCTFail("\(s.debugDescription):\n got      \(got)\n expected \(expected)\n pieces   \(tok.tokenize(s))")
            }
        }
        XCTAssertTrue(golden.inputIDs.contains { $0.count == golden.maxSeqLength }, "fixtures must exercise truncation")
        print("tokenizer: \(golden.sentences.count - mismatches)/\(golden.sentences.count) sentences match exactly")
    }

    /// The vocab.txt + tokenizer_config.json route must agree with the tokenizer.json route.
    func testVocabTxtRouteMatchesGolden() throws {
        let golden = try EmbedderGolden.load()
        let dir = try ScratchModel.make(omitting: ["tokenizer.json"])
        defer { ScratchModel.remove(dir) }
        let tok = try WordPieceTokenizer(directory: dir, maxLength: golden.maxSeqLength)
        for (s, expected) in zip(golden.sentences, golden.inputIDs) {
            XCTAssertEqual(tok.encode(s), expected, s.debugDescription)
        }
    }

    /// A vocabulary small enough to follow by hand: greedy longest match with "##",
    /// punctuation split off, lower-casing and accent stripping, [UNK] for unmatched words.
    func testTinyVocabularyByHand() throws {
        let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "hello", ",", "!", "cafe", "##a", "a"]
        let vocab = Dictionary(uniqueKeysWithValues: words.enumerated().map { ($1, $0) })
        var options = WordPieceTokenizer.Options()
        options.maxLength = 8
        let tok = try WordPieceTokenizer(vocabulary: vocab, options: options)
        // "UnAffable" → un ##aff ##able; "," and "!" split off; truncated to 8 ids in all.
        XCTAssertEqual(tok.encode("UnAffable, hello! CAFÉ"), [2, 4, 5, 6, 8, 7, 9, 3])
        XCTAssertEqual(tok.encode("CAFÉ héllo"), [2, 10, 7, 3], "lower-cased, accents stripped")
        XCTAssertEqual(tok.encode("xyz"), [2, 1, 3], "unmatched word must be one [UNK]")
        XCTAssertEqual(tok.encode("unx"), [2, 1, 3], "a word with an unmatched remainder is one [UNK], not un + [UNK]")
        XCTAssertEqual(tok.encode("aaa"), [2, 12, 11, 11, 3])
        XCTAssertEqual(tok.encode(""), [2, 3])
        XCTAssertEqual(tok.encode(String(repeating: "a", count: 101)), [2, 1, 3], "over max_input_chars_per_word → [UNK]")
    }

    func testMissingVocabularyNamesTheFile() throws {
        let dir = try ScratchModel.make(omitting: ["tokenizer.json", "vocab.txt"])
        defer { ScratchModel.remove(dir) }
        XCTAssertThrowsError(try WordPieceTokenizer(directory: dir, maxLength: 256)) { error in
            XCTAssertTrue("\(error)".contains("vocab.txt"), "\(error)")
        }
    }
}
