import C3POCore
import Foundation
import XCTest

/// Scripts/bootstrap must leave a complete sentence-transformers folder where the tools look.
final class EmbedderFolderTests: XCTestCase {
    func testBootstrapInstalledTheDefaultEmbedder() throws {
        let dir = C3POPaths.defaultEmbedder
        for file in ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "1_Pooling/config.json", "sentence_bert_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "\(dir.path)/\(file) missing: run Scripts/bootstrap")
        }
        let st = try SafetensorsFile(url: dir.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(try st.tensor("embeddings.word_embeddings.weight").shape, [30522, 384])
    }
}
