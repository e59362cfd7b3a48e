import C3POCore
import Foundation

/// Errors from loading a BERT encoder.
public enum BertModelError: Error, CustomStringConvertible {
    case missingFile(URL)
    case badConfig(URL, String)
    case badInput(String)

    public var description: String {
        switch self {
        case let .badInput(why): return "BERT input: \(why)"
        case let .missingFile(url): return "\(url.path): missing"
        case let .badConfig(url, why): return "\(url.path): \(why)"
        }
    }
}

/// `config.json` of a Hugging Face BERT checkpoint (`BertConfig` in transformers).
public struct BertConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var vocabSize: Int
    public var layerNormEps: Float
    public var hiddenAct: String
    public var positionEmbeddingType: String
    public var nameOrPath: String?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabSize = "type_vocab_size"
        case vocabSize = "vocab_size"
        case layerNormEps = "layer_norm_eps"
        case hiddenAct = "hidden_act"
        case positionEmbeddingType = "position_embedding_type"
        case nameOrPath = "_name_or_path"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 512
        typeVocabSize = try c.decodeIfPresent(Int.self, forKey: .typeVocabSize) ?? 2
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-12
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu"
        positionEmbeddingType = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType) ?? "absolute"
        nameOrPath = try c.decodeIfPresent(String.self, forKey: .nameOrPath)
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }

    /// What this implementation supports; checked once after decoding.
    func validate(_ url: URL) throws {
        guard hiddenSize > 0, numHiddenLayers > 0, numAttentionHeads > 0, intermediateSize > 0, vocabSize > 0 else {
            throw BertModelError.badConfig(url, "sizes must be positive")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw BertModelError.badConfig(url, "hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        guard hiddenAct == "gelu" else { throw BertModelError.badConfig(url, "hidden_act '\(hiddenAct)' unsupported (need gelu)") }
        guard positionEmbeddingType == "absolute" else {
            throw BertModelError.badConfig(url, "position_embedding_type '\(positionEmbeddingType)' unsupported (need absolute)")
        }
    }
}

/// A BERT encoder (transformers `BertModel` without the pooler), weights converted to f32
/// once at load. Sequences are processed packed, without padding: the linear layers see all
/// tokens of a batch as one matrix, and attention runs per sequence over its own tokens,
/// which is exactly what the padding mask computes, minus the wasted rows.
public final class BertModel: @unchecked Sendable {
    public let config: BertConfig

    private struct Layer {
        var qkvWeight: PanelWeights   // [3·hidden, hidden]: query, key, value stacked
        var qkvBias: [Float]     // [3·hidden]
        var outWeight: PanelWeights   // [hidden, hidden]
        var outBias: [Float]
        var attnNormWeight: [Float], attnNormBias: [Float]
        var upWeight: PanelWeights    // [intermediate, hidden]
        var upBias: [Float]
        var downWeight: PanelWeights  // [hidden, intermediate]
        var downBias: [Float]
        var outNormWeight: [Float], outNormBias: [Float]
    }

    private let wordEmbeddings: [Float]      // [vocab, hidden]
    private let positionEmbeddings: [Float]  // [maxPositions, hidden]
    private let tokenTypeEmbeddings: [Float] // [typeVocab, hidden]
    private let embNormWeight: [Float], embNormBias: [Float]
    private let layers: [Layer]

    public init(directory: URL) throws {
        let cfgURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: cfgURL.path) else { throw BertModelError.missingFile(cfgURL) }
        do {
            config = try JSONDecoding.decode(BertConfig.self, from: Data(contentsOf: cfgURL))
        } catch let DecodingError.keyNotFound(key, _) {
            throw BertModelError.badConfig(cfgURL, "missing key '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw BertModelError.badConfig(cfgURL, "key '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch {
            throw BertModelError.badConfig(cfgURL, "not a valid JSON object")
        }
        try config.validate(cfgURL)
        let weightsURL = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsURL.path) else { throw BertModelError.missingFile(weightsURL) }
        let st = try SafetensorsFile(url: weightsURL)
        // Checkpoints saved from BertForX carry a "bert." prefix.
        let prefix = st.tensors["embeddings.word_embeddings.weight"] == nil && st.tensors["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        let h = config.hiddenSize, inter = config.intermediateSize
        func load(_ name: String, _ shape: [Int]) throws -> [Float] {
            let t = try st.tensor(prefix + name)
            guard t.shape == shape else {
                throw SafetensorsFile.Error.badTensor(weightsURL, prefix + name, "shape \(t.shape), expected \(shape)")
            }
            guard t.isFloat else { throw SafetensorsFile.Error.badTensor(weightsURL, prefix + name, "dtype \(t.dtype), expected F32, F16 or BF16") }
            return t.floats()
        }
        wordEmbeddings = try load("embeddings.word_embeddings.weight", [config.vocabSize, h])
        positionEmbeddings = try load("embeddings.position_embeddings.weight", [config.maxPositionEmbeddings, h])
        tokenTypeEmbeddings = try load("embeddings.token_type_embeddings.weight", [config.typeVocabSize, h])
        embNormWeight = try load("embeddings.LayerNorm.weight", [h])
        embNormBias = try load("embeddings.LayerNorm.bias", [h])
        var layers: [Layer] = []
        for i in 0..<config.numHiddenLayers {
            let p = "encoder.layer.\(i)."
            let qkvW = try load(p + "attention.self.query.weight", [h, h]) + load(p + "attention.self.key.weight", [h, h])
                + load(p + "attention.self.value.weight", [h, h])
            let qkvB = try load(p + "attention.self.query.bias", [h]) + load(p + "attention.self.key.bias", [h])
                + load(p + "attention.self.value.bias", [h])
            layers.append(Layer(
                qkvWeight: PanelWeights(qkvW, outFeatures: 3 * h, inFeatures: h), qkvBias: qkvB,
                outWeight: PanelWeights(try load(p + "attention.output.dense.weight", [h, h]), outFeatures: h, inFeatures: h),
                outBias: try load(p + "attention.output.dense.bias", [h]),
                attnNormWeight: try load(p + "attention.output.LayerNorm.weight", [h]),
                attnNormBias: try load(p + "attention.output.LayerNorm.bias", [h]),
                upWeight: PanelWeights(try load(p + "intermediate.dense.weight", [inter, h]), outFeatures: inter, inFeatures: h),
                upBias: try load(p + "intermediate.dense.bias", [inter]),
                downWeight: PanelWeights(try load(p + "output.dense.weight", [h, inter]), outFeatures: h, inFeatures: inter),
                downBias: try load(p + "output.dense.bias", [h]),
                outNormWeight: try load(p + "output.LayerNorm.weight", [h]),
                outNormBias: try load(p + "output.LayerNorm.bias", [h])))
        }
        self.layers = layers
    }

    /// Last hidden states of the sequences, packed: [sum of lengths, hidden], sequence after
    /// sequence. Ids must lie in 0..<vocabSize and each sequence fit maxPositionEmbeddings.
    public func forward(_ sequences: [[Int]], threads: Int = Parallel.defaultThreads) throws -> [Float] {
        let h = config.hiddenSize, inter = config.intermediateSize
        let heads = config.numAttentionHeads, d = config.headDim
        var starts: [Int] = []
        var total = 0
        for (i, s) in sequences.enumerated() {
            guard s.count <= config.maxPositionEmbeddings else {
                throw BertModelError.badInput("sequence \(i) has \(s.count) tokens, more than max_position_embeddings \(config.maxPositionEmbeddings)")
            }
            if let bad = s.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
                throw BertModelError.badInput("sequence \(i) holds token id \(bad), outside 0..<\(config.vocabSize)")
            }
            starts.append(total); total += s.count
        }
        guard total > 0 else { return [] }

        var x = [Float](repeating: 0, count: total * h)          // [tokens, hidden]
        var qkv = [Float](repeating: 0, count: total * 3 * h)    // [tokens, 3·hidden]
        var ctx = [Float](repeating: 0, count: total * h)        // [tokens, hidden]
        var tmp = [Float](repeating: 0, count: total * h)        // [tokens, hidden]
        var up = [Float](repeating: 0, count: total * inter)     // [tokens, intermediate]
        let eps = config.layerNormEps

        // Embeddings: word + position + token type 0, then LayerNorm.
        x.withUnsafeMutableBufferPointer { xb in
            let xp = xb.baseAddress!
            wordEmbeddings.withUnsafeBufferPointer { we in
                positionEmbeddings.withUnsafeBufferPointer { pe in
                    tokenTypeEmbeddings.withUnsafeBufferPointer { te in
                        for (si, seq) in sequences.enumerated() {
                            for (pos, id) in seq.enumerated() {
                                let row = xp + (starts[si] + pos) * h
                                let w = we.baseAddress! + id * h, p = pe.baseAddress! + pos * h, t = te.baseAddress!
                                for j in 0..<h { row[j] = w[j] + p[j] + t[j] }
                            }
                        }
                    }
                }
            }
            Self.layerNorm(xp, rows: total, width: h, weight: embNormWeight, bias: embNormBias, eps: eps, threads: threads)
        }

        let scale = 1 / Float(d).squareRoot()
        for layer in layers {
            x.withUnsafeMutableBufferPointer { xb in
            qkv.withUnsafeMutableBufferPointer { qb in
            ctx.withUnsafeMutableBufferPointer { cb in
            tmp.withUnsafeMutableBufferPointer { tb in
            up.withUnsafeMutableBufferPointer { ub in
                let xp = xb.baseAddress!, qp = qb.baseAddress!, cp = cb.baseAddress!, tp = tb.baseAddress!, upp = ub.baseAddress!
                // qkv [tokens, 3·hidden] = x [tokens, hidden] · Wqkvᵀ [hidden, 3·hidden] + b
                layer.qkvBias.withUnsafeBufferPointer { b in
                    MatMul.linear(xp, rows: total, weight: layer.qkvWeight, bias: b.baseAddress!, into: qp, threads: threads)
                }
                // Attention per sequence (its own tokens only: the padding mask), all heads; the
                // items are (sequence, group of heads), so that one sentence's heads split across
                // the workers too.
                let qIn = UnsafePointer(qp)
                let headGroups = sequences.count >= 2 * threads ? 1 : min(heads, 2 * threads), perGroup = (heads + headGroups - 1) / headGroups
                Parallel.dynamicForEach(sequences.count * headGroups, workers: threads) { _, item in
                    let si = item / headGroups, group = item % headGroups
                    let n = sequences[si].count
                    guard n > 0 else { return }
                    let base = qIn + starts[si] * 3 * h
                    // Both products of a head by outer products (the panel kernel): Kᵀ and V are
                    // small panels made per head; the dot kernel was reduction-bound at d = 32.
                    let keyPanels = MatMul.panelFloats(outFeatures: n, inFeatures: d), valuePanels = MatMul.panelFloats(outFeatures: d, inFeatures: n)
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: n * n + keyPanels + valuePanels) // [n, n]
                    defer { scores.deallocate() }
                    let kp = scores + n * n, vp = kp + keyPanels
                    for head in (group * perGroup)..<min(heads, (group + 1) * perGroup) {
                        let q = base + head * d, k = base + h + head * d, v = base + 2 * h + head * d
                        // scores [n, n] = scale · Q [n, d] · Kᵀ [d, n]
                        MatMul.packPanels(k, ldw: 3 * h, outFeatures: n, inFeatures: d, into: kp)
                        MatMul.linearPanels(q, ldx: 3 * h, panels: kp, into: scores, ldy: n, m: n, n: n, k: d)
                        for i in 0..<(n * n) { scores[i] *= scale }
                        Self.softmaxRows(scores, rows: n, width: n)
                        // ctx[:, head] [n, d] = P [n, n] · V [n, d]: V's rows are the panel's (features c < d)
                        MatMul.packTransposedPanels(v, ldv: 3 * h, rows: n, features: d, into: vp)
                        MatMul.linearPanels(scores, ldx: n, panels: vp, into: cp + starts[si] * h + head * d, ldy: h, m: n, n: d, k: n)
                    }
                }
                // tmp [tokens, hidden] = ctx · Woᵀ + b; x = LayerNorm(x + tmp)
                layer.outBias.withUnsafeBufferPointer { b in
                    MatMul.linear(cp, rows: total, weight: layer.outWeight, bias: b.baseAddress!, into: tp, threads: threads)
                }
                Self.addLayerNorm(xp, tp, rows: total, width: h, weight: layer.attnNormWeight, bias: layer.attnNormBias, eps: eps, threads: threads)
                // up [tokens, intermediate] = GELU(x · W1ᵀ + b1)
                layer.upBias.withUnsafeBufferPointer { b in
                    MatMul.linear(xp, rows: total, weight: layer.upWeight, bias: b.baseAddress!, into: upp, threads: threads)
                }
                Self.gelu(upp, count: total * inter, threads: threads)
                // tmp [tokens, hidden] = up · W2ᵀ + b2; x = LayerNorm(x + tmp)
                layer.downBias.withUnsafeBufferPointer { b in
                    MatMul.linear(upp, rows: total, weight: layer.downWeight, bias: b.baseAddress!, into: tp, threads: threads)
                }
                Self.addLayerNorm(xp, tp, rows: total, width: h, weight: layer.outNormWeight, bias: layer.outNormBias, eps: eps, threads: threads)
            }}}}}
        }
        return x
    }

    // MARK: kernels

    /// Row-wise softmax in place, max-subtracted.
    static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows { MatMul.softmax(p + r * width, count: width) }
    }

    /// LayerNorm over the last axis in place (biased variance, eps inside the root, as torch).
    static func layerNorm(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, weight: [Float], bias: [Float], eps: Float, threads: Int) {
        addLayerNorm(x, nil, rows: rows, width: width, weight: weight, bias: bias, eps: eps, threads: threads)
    }

    /// x = LayerNorm(x + residual), row by row.
    static func addLayerNorm(_ x: UnsafeMutablePointer<Float>, _ residual: UnsafeMutablePointer<Float>?, rows: Int, width: Int,
                             weight: [Float], bias: [Float], eps: Float, threads: Int) {
        weight.withUnsafeBufferPointer { wb in
            bias.withUnsafeBufferPointer { bb in
                let w = wb.baseAddress!, b = bb.baseAddress!
                let chunks = min(threads, max(1, rows / 64))
                Parallel.forEach(chunks, threads: chunks) { c in
                    for r in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                        MatMul.addLayerNorm(x + r * width, residual: residual.map { UnsafePointer($0 + r * width) }, count: width, weight: w, bias: b, eps: eps)
                    }
                }
            }
        }
    }

    /// Exact GELU, x · Φ(x) = 0.5 · x · (1 + erf(x / √2)) (transformers' "gelu"), in place.
    static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int, threads: Int) {
        let chunks = min(threads, max(1, count / 16384))
        Parallel.forEach(chunks, threads: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            MatMul.gelu(x + lo, count: hi - lo)
        }
    }
}
