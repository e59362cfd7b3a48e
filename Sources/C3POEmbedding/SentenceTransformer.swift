import C3POCore
import Foundation

/// Errors from loading a sentence-transformers folder.
public enum SentenceTransformerError: Error, CustomStringConvertible {
    case notADirectory(URL)
    case missingFile(URL)
    case malformed(URL, String)

    public var description: String {
        switch self {
        case let .notADirectory(url): return "\(url.path): no such model folder (expected a sentence-transformers folder with config.json, model.safetensors, vocab.txt or tokenizer.json)"
        case let .missingFile(url): return "\(url.path): missing"
        case let .malformed(url, why): return "\(url.path): \(why)"
        }
    }
}

/// A sentence-transformers model of the BERT family (Transformer → Pooling → Normalize),
/// e.g. all-MiniLM-L6-v2, loaded from its folder: `config.json`, `model.safetensors`,
/// `vocab.txt` or `tokenizer.json`, `1_Pooling/config.json`, `sentence_bert_config.json`.
///
/// Call `embed` from one thread at a time; it is internally multi-threaded.
public final class SentenceTransformer: SentenceEmbedder, @unchecked Sendable {
    public enum Pooling: String, Sendable { case mean, cls }

    public let directory: URL
    public let identifier: String
    public let dimension: Int
    public let pooling: Pooling
    public let maxSequenceLength: Int
    public let tokenizer: WordPieceTokenizer
    public let model: BertModel

    public init(directory: URL) throws {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw SentenceTransformerError.notADirectory(directory)
        }
        model = try BertModel(directory: directory)
        let config = model.config

        // sentence_bert_config.json: max_seq_length (BERT's 512 positions when absent).
        let sbURL = directory.appendingPathComponent("sentence_bert_config.json")
        var maxLength = config.maxPositionEmbeddings
        if FileManager.default.fileExists(atPath: sbURL.path) {
            let obj = try Self.jsonObject(sbURL)
            if let v = obj["max_seq_length"] {
                guard let n = (v as? NSNumber)?.intValue, n >= 2 else { throw SentenceTransformerError.malformed(sbURL, "max_seq_length must be an integer ≥ 2") }
                maxLength = n
            }
            if obj["do_lower_case"] as? Bool == true {
                throw SentenceTransformerError.malformed(sbURL, "do_lower_case true is unsupported")
            }
        } else {
            throw SentenceTransformerError.missingFile(sbURL)
        }
        guard maxLength <= config.maxPositionEmbeddings else {
            throw SentenceTransformerError.malformed(sbURL, "max_seq_length \(maxLength) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        maxSequenceLength = maxLength

        // 1_Pooling/config.json: mean or CLS pooling over the token embeddings.
        let poolURL = directory.appendingPathComponent("1_Pooling/config.json")
        guard FileManager.default.fileExists(atPath: poolURL.path) else { throw SentenceTransformerError.missingFile(poolURL) }
        let pool = try Self.jsonObject(poolURL)
        guard let dim = (pool["word_embedding_dimension"] as? NSNumber)?.intValue else {
            throw SentenceTransformerError.malformed(poolURL, "no integer word_embedding_dimension")
        }
        guard dim == config.hiddenSize else {
            throw SentenceTransformerError.malformed(poolURL, "word_embedding_dimension \(dim) differs from hidden_size \(config.hiddenSize)")
        }
        let modes = ["pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                     "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"]
            .filter { pool[$0] as? Bool == true }
        switch modes {
        case ["pooling_mode_mean_tokens"]: pooling = .mean
        case ["pooling_mode_cls_token"]: pooling = .cls
        default: throw SentenceTransformerError.malformed(poolURL, "pooling \(modes) unsupported (need exactly one of mean_tokens, cls_token)")
        }
        dimension = dim

        tokenizer = try WordPieceTokenizer(directory: directory, maxLength: maxLength)
        guard tokenizer.maxTokenID < config.vocabSize else {
            throw SentenceTransformerError.malformed(directory.appendingPathComponent("config.json"),
                "vocab_size \(config.vocabSize) is smaller than the tokenizer's vocabulary (largest id \(tokenizer.maxTokenID))")
        }
        identifier = Self.identifier(directory: directory, config: config)
    }

    /// The hub name, e.g. "sentence-transformers/all-MiniLM-L6-v2": a `owner/<folder name>`
    /// quoted in README.md (the model card's usage example), else config.json's `_name_or_path`
    /// when it names this folder, else the folder name.
    static func identifier(directory: URL, config: BertConfig) -> String {
        let folder = directory.standardizedFileURL.lastPathComponent
        if let readme = try? String(contentsOf: directory.appendingPathComponent("README.md"), encoding: .utf8) {
            for quote in ["'", "\""] {
                var rest = readme[...]
                while let r = rest.range(of: "/\(folder)\(quote)") {
                    // Walk back from the slash to the opening quote: the owner name.
                    var i = r.lowerBound
                    var owner = ""
                    while i > readme.startIndex {
                        let prev = readme.index(before: i)
                        let c = readme[prev]
                        if String(c) == quote { break }
                        guard c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." else { owner = ""; break }
                        owner = String(c) + owner
                        i = prev
                    }
                    if !owner.isEmpty { return "\(owner)/\(folder)" }
                    rest = readme[r.upperBound...]
                }
            }
        }
        if let name = config.nameOrPath, name.split(separator: "/").last.map(String.init) == folder, !name.hasPrefix("/") {
            return name
        }
        return folder
    }

    static func jsonObject(_ url: URL) throws -> [String: Any] {
        guard let data = try? Data(contentsOf: url) else { throw SentenceTransformerError.missingFile(url) }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw SentenceTransformerError.malformed(url, "not a JSON object")
        }
        return obj
    }

    /// Embeddings [texts.count, dimension], row-major, L2-normalised. Texts are sorted by
    /// token count (longest first, as sentence-transformers does) into batches of `batchSize`;
    /// rows come back in input order.
    public func embed(_ texts: [String], batchSize: Int = 32, progress: ProgressReporter? = nil) throws -> [Float] {
        let n = texts.count
        guard n > 0 else { return [] }
        let threads = Parallel.defaultThreads
        var ids = [[Int]](repeating: [], count: n)
        ids.withUnsafeMutableBufferPointer { buf in
            let out = buf.baseAddress!
            Parallel.forEach(n, threads: threads) { i in out[i] = tokenizer.encode(texts[i]) }
        }
        let lengths: [Int] = ids.map { $0.count }
        let order: [Int] = (0..<n).sorted { (a: Int, b: Int) -> Bool in
            lengths[a] != lengths[b] ? lengths[a] > lengths[b] : a < b
        }
        let dim = dimension
        var result = [Float](repeating: 0, count: n * dim)
        let step = max(1, batchSize)
        var done = 0
        for lo in stride(from: 0, to: n, by: step) {
            let members = Array(order[lo..<min(n, lo + step)])
            let batch = members.map { ids[$0] }
            let hidden = try model.forward(batch, threads: threads) // [tokens, hidden]
            var start = 0
            hidden.withUnsafeBufferPointer { hb in
                result.withUnsafeMutableBufferPointer { rb in
                    for (j, seq) in batch.enumerated() {
                        let dst = rb.baseAddress! + members[j] * dim
                        let src = hb.baseAddress! + start * dim
                        switch pooling {
                        case .cls:
                            dst.update(from: src, count: dim)
                        case .mean:
                            // Mean over the sequence's tokens ([CLS] and [SEP] included: the attention mask).
                            for t in 0..<seq.count { for k in 0..<dim { dst[k] += src[t * dim + k] } }
                            let inv = 1 / Float(seq.count)
                            for k in 0..<dim { dst[k] *= inv }
                        }
                        // torch.nn.functional.normalize: x / max(‖x‖₂, 1e-12).
                        var norm: Float = 0
                        for k in 0..<dim { norm += dst[k] * dst[k] }
                        let inv = 1 / max(norm.squareRoot(), 1e-12)
                        for k in 0..<dim { dst[k] *= inv }
                        start += seq.count
                    }
                }
            }
            done += members.count
            progress?.update(done)
        }
        return result
    }
}
