import C3POCore
import Foundation

/// Tests/Fixtures/embedder, written by Scripts/make-embedder-fixtures from sentence-transformers.
struct EmbedderGolden: Decodable {
    var sentences: [String]
    var inputIDs: [[Int]]
    var maxSeqLength: Int

    enum CodingKeys: String, CodingKey {
        case sentences
        case inputIDs = "input_ids"
        case maxSeqLength = "max_seq_length"
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/embedder")

    static func load() throws -> EmbedderGolden {
        try JSONDecoder().decode(EmbedderGolden.self, from: Data(contentsOf: directory.appendingPathComponent("golden.json")))
    }

    /// Reference embeddings [sentences, 384].
    static func embeddings() throws -> (shape: [Int], values: [Float]) {
        let (header, values) = try NPY.readFloats(directory.appendingPathComponent("embeddings.npy"))
        return (header.shape, values)
    }
}

/// A scratch folder holding links to the default embedder's files, minus or plus changes.
enum ScratchModel {
    static let files = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                        "sentence_bert_config.json", "README.md", "1_Pooling/config.json"]

    static func make(omitting omitted: Set<String> = [], name: String = "all-MiniLM-L6-v2") throws -> URL {
        let fm = FileManager.default
        let parent = fm.temporaryDirectory.appendingPathComponent("c3po-embed-\(UUID().uuidString)")
        let dir = parent.appendingPathComponent(name)
        try fm.createDirectory(at: dir.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
        for f in files where !omitted.contains(f) {
            let src = C3POPaths.defaultEmbedder.appendingPathComponent(f)
            if fm.fileExists(atPath: src.path) {
                try fm.createSymbolicLink(at: dir.appendingPathComponent(f), withDestinationURL: src)
            }
        }
        return dir
    }

    static func replace(_ file: String, in dir: URL, with contents: Data) throws {
        let url = dir.appendingPathComponent(file)
        try? FileManager.default.removeItem(at: url)
        try contents.write(to: url)
    }

    static func remove(_ dir: URL) {
        try? FileManager.default.removeItem(at: dir.deletingLastPathComponent())
    }
}
