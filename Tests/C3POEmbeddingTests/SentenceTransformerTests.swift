import C3POCore
import C3POEmbedding
import Foundation
import XCTest

final class SentenceTransformerTests: XCTestCase {
    /// Cosine similarity with sentence-transformers' embeddings ≥ 0.9999 for every sentence.
    func testEmbeddingsMatchSentenceTransformers() throws {
        let golden = try EmbedderGolden.load()
        let (shape, reference) = try EmbedderGolden.embeddings()
        let model = try SentenceTransformer(directory: C3POPaths.defaultEmbedder)
        XCTAssertEqual(model.identifier, "sentence-transformers/all-MiniLM-L6-v2")
        XCTAssertEqual(model.dimension, 384)
        XCTAssertEqual(shape, [golden.sentences.count, 384])
        // An odd batch size: batches mix lengths differently than the reference's 32.
        let ours = try model.embed(golden.sentences, batchSize: 5, progress: nil)
        XCTAssertEqual(ours.count, reference.count)
        let d = 384
        var worstCosine: Float = 1, worstIndex = 0, largestDiff: Float = 0
        for i in 0..<golden.sentences.count {
            var dot: Float = 0, norm: Float = 0
            for k in 0..<d {
                dot += ours[i * d + k] * reference[i * d + k]
                norm += ours[i * d + k] * ours[i * d + k]
                largestDiff = max(largestDiff, abs(ours[i * d + k] - reference[i * d + k]))
            }
            XCTAssertEqual(norm, 1, accuracy: 1e-4, "row \(i) not unit length")
            if dot < worstCosine { worstCosine = dot; worstIndex = i }
            XCTAssertGreaterThanOrEqual(dot, 0.9999, "sentence \(i) \(golden.sentences[i].prefix(60).debugDescription)")
        }
        print("embedder: lowest cosine \(worstCosine) (sentence \(worstIndex)), largest element difference \(largestDiff)")

        // Batching must not change the result (order restored, no cross-talk between sequences).
        let single = try model.embed(Array(golden.sentences.prefix(3)), batchSize: 1, progress: nil)
        for k in 0..<(3 * d) { XCTAssertEqual(single[k], ours[k], accuracy: 1e-5) }
        XCTAssertEqual(try model.embed([], batchSize: 32, progress: nil), [])
        // The encoder refuses ids outside its table and sequences beyond its positions.
        XCTAssertThrowsError(try model.model.forward([[101, 30522, 102]]))
        XCTAssertThrowsError(try model.model.forward([[Int](repeating: 100, count: 513)]))
    }

    private func assertLoadFails(_ dir: URL, mentions needle: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SentenceTransformer(directory: dir), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(needle), "error should name \(needle): \(error)", file: file, line: line)
        }
    }

    func testMissingFolderAndFilesAreNamed() throws {
        assertLoadFails(URL(fileURLWithPath: "/nonexistent/c3po-model"), mentions: "/nonexistent/c3po-model")
        for missing in ["config.json", "model.safetensors", "1_Pooling/config.json", "sentence_bert_config.json"] {
            let dir = try ScratchModel.make(omitting: [missing])
            defer { ScratchModel.remove(dir) }
            assertLoadFails(dir, mentions: missing)
        }
    }

    func testMalformedFilesAreNamed() throws {
        let dir = try ScratchModel.make()
        defer { ScratchModel.remove(dir) }
        try ScratchModel.replace("config.json", in: dir, with: Data("{\"hidden_size\": 384".utf8))
        assertLoadFails(dir, mentions: "config.json")
        try ScratchModel.replace("config.json", in: dir, with: Data(#"{"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536, "vocab_size": 30522}"#.utf8))
        assertLoadFails(dir, mentions: "num_attention_heads")

        let dir2 = try ScratchModel.make()
        defer { ScratchModel.remove(dir2) }
        try ScratchModel.replace("model.safetensors", in: dir2, with: Data([1, 2, 3]))
        assertLoadFails(dir2, mentions: "model.safetensors")

        let dir3 = try ScratchModel.make()
        defer { ScratchModel.remove(dir3) }
        try ScratchModel.replace("1_Pooling/config.json", in: dir3, with: Data(#"{"word_embedding_dimension": 384, "pooling_mode_max_tokens": true}"#.utf8))
        assertLoadFails(dir3, mentions: "1_Pooling/config.json")
    }

    func testIdentifierFallsBackToFolderName() throws {
        let dir = try ScratchModel.make(omitting: ["README.md"], name: "my-embedder")
        defer { ScratchModel.remove(dir) }
        let model = try SentenceTransformer(directory: dir)
        XCTAssertEqual(model.identifier, "my-embedder")
    }
}
