import Foundation

/// Multiple-choice scoring on label-token logits: the answer is the label whose token
/// has the highest logit at the last prompt position (OLMES-style MC scoring of " A",
/// " B", ...); ties go to the earlier label.
public enum MCScoring {
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return best
    }

    /// Cross-entropy of `gold` under the softmax over the label logits only (the loss ℓ
    /// of the paper's L(ω), restricted to the answer options).
    public static func crossEntropy(_ logits: [Float], gold: Int) -> Float {
        guard logits.indices.contains(gold) else { return .infinity }
        let m = logits.max() ?? 0
        let z = logits.reduce(0.0) { $0 + exp(Double($1 - m)) }
        return Float(log(z) - Double(logits[gold] - m))
    }
}

/// Wall-clock seconds of a block.
@inline(__always)
func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let r = try body()
    return (r, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
}
