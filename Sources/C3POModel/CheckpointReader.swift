import C3POCore
import Foundation

/// Strict reading of a checkpoint's tensors for one architecture: every tensor is looked up by
/// name and shape (an error names it), and `finish()` refuses any tensor the architecture did
/// not use. Weights stay memory-mapped in their stored dtype.
struct CheckpointReader {
    let directory: URL
    let checkpoint: SafetensorsCheckpoint
    private(set) var used = Set<String>()

    init(directory: URL) throws {
        self.directory = directory
        checkpoint = try SafetensorsCheckpoint(directory: directory)
    }

    func has(_ name: String) -> Bool { checkpoint.tensors[name] != nil }

    mutating func tensor(_ name: String, _ shape: [Int]) throws -> SafetensorsFile.Tensor {
        guard let t = checkpoint.tensors[name] else { throw ModelError.tensor(directory, name: name, "missing from the checkpoint") }
        guard t.shape == shape else { throw ModelError.tensor(directory, name: name, "shape \(t.shape), expected \(shape)") }
        guard t.isFloat else { throw ModelError.tensor(directory, name: name, "dtype \(t.dtype), expected F32, F16 or BF16") }
        used.insert(name)
        return t
    }

    mutating func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> WeightMatrix {
        WeightMatrix(try tensor(name, [rows, cols]), rows: rows, cols: cols)
    }

    mutating func vector(_ name: String, _ count: Int) throws -> [Float] { try tensor(name, [count]).floats() }

    /// One SwiGLU MLP (`prefix` + gate/up/down names + ".weight"), as a bank of one expert.
    mutating func mlp(_ prefix: String, hidden h: Int, inter n: Int,
                      names: (gate: String, up: String, down: String) = ("gate_proj", "up_proj", "down_proj")) throws -> ExpertBank {
        let e = SwiGLUExpert(gate: try matrix(prefix + names.gate + ".weight", n, h), up: try matrix(prefix + names.up + ".weight", n, h),
                             down: try matrix(prefix + names.down + ".weight", h, n))
        return ExpertBank(experts: [e], hidden: h, inter: n)
    }

    /// `count` routed experts under `prefix` (e.g. "model.layers.3.mlp.experts."): the released
    /// per-expert layout (`{prefix}{e}.{gate}.weight` ...) or transformers 5's fused one
    /// (`{prefix}gate_up_proj` [experts, 2·inter, hidden], gate rows first, and
    /// `{prefix}down_proj` [experts, hidden, inter]).
    mutating func experts(_ prefix: String, count e: Int, hidden h: Int, inter n: Int,
                          names: (gate: String, up: String, down: String) = ("gate_proj", "up_proj", "down_proj")) throws -> ExpertBank {
        var experts: [SwiGLUExpert] = []
        if has(prefix + "gate_up_proj") {
            let gu = try tensor(prefix + "gate_up_proj", [e, 2 * n, h])
            let dn = try tensor(prefix + "down_proj", [e, h, n])
            for x in 0..<e {
                experts.append(SwiGLUExpert(gate: WeightMatrix(gu, offset: x * 2 * n * h, rows: n, cols: h),
                                            up: WeightMatrix(gu, offset: x * 2 * n * h + n * h, rows: n, cols: h),
                                            down: WeightMatrix(dn, offset: x * h * n, rows: h, cols: n)))
            }
        } else {
            for x in 0..<e {
                let q = "\(prefix)\(x)."
                experts.append(SwiGLUExpert(gate: try matrix(q + names.gate + ".weight", n, h), up: try matrix(q + names.up + ".weight", n, h),
                                            down: try matrix(q + names.down + ".weight", h, n)))
            }
        }
        return ExpertBank(experts: experts, hidden: h, inter: n)
    }

    /// The embedding, final norm and LM head (`lm_head.weight`, or the embedding when tied; a
    /// tied checkpoint that still stores the head must store it in the right shape).
    mutating func embeddingAndHead(vocab: Int, hidden h: Int, tied: Bool) throws -> (embedding: WeightMatrix, head: WeightMatrix, norm: [Float]) {
        let embedding = try matrix("model.embed_tokens.weight", vocab, h)
        let norm = try vector("model.norm.weight", h)
        if tied {
            if has("lm_head.weight") { _ = try tensor("lm_head.weight", [vocab, h]) }
            return (embedding, embedding, norm)
        }
        return (embedding, try matrix("lm_head.weight", vocab, h), norm)
    }

    /// Refuses a checkpoint holding tensors the architecture has no use for, by name.
    func finish(_ what: String) throws {
        // Older releases store RoPE's inverse frequencies; they are recomputed from rope_theta.
        if let extra = checkpoint.tensors.keys.filter({ !used.contains($0) && !$0.hasSuffix(".rotary_emb.inv_freq") }).sorted().first {
            throw ModelError.tensor(directory, name: extra, "not expected by the \(what) architecture")
        }
    }
}
