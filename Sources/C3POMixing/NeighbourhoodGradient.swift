import C3POCore
import C3POModel
import Foundation

/// Where `--method ngd` starts ω.
public enum NGDStart: String, CaseIterable, Sendable, Codable {
    /// The test sample's own routing (the router's distribution of the critical layers).
    case own
    /// The kernel-regression estimate (`--method kernel`'s pathway), refined by the steps.
    case kernel
}

/// The knobs of neighbourhood gradient descent.
public struct NGDParameters: Sendable, Equatable {
    public var steps: Int = 10
    /// Step size on the softmax logits θ of the core experts.
    public var learningRate: Float = 10
    public var start: NGDStart = .kernel

    public init(steps: Int = 10, learningRate: Float = 10, start: NGDStart = .kernel) {
        self.steps = steps; self.learningRate = learningRate; self.start = start
    }

    public func validate() throws {
        guard steps >= 0 else { throw MixingError.invalidParameter("--ngd-steps must not be negative (got \(steps))") }
        guard learningRate.isFinite, learningRate > 0 else { throw MixingError.invalidParameter("--ngd-lr must be positive (got \(learningRate))") }
    }
}

/// One neighbour in the NGD objective: its cached prefill, its label rows, its gold label, and
/// its kernel weight K(x_i, x).
public struct NGDNeighbor {
    public var state: PrefillState
    public var labelIDs: [Int]
    public var gold: Int
    public var weight: Float

    public init(state: PrefillState, labelIDs: [Int], gold: Int, weight: Float) {
        self.state = state; self.labelIDs = labelIDs; self.gold = gold; self.weight = weight
    }
}

/// Neighbourhood gradient descent (paper §3.3): minimise the neighbours' kernel-weighted loss
/// L(ω) = Σ K(x_i, x) ℓ(f(x_i, ω), y_i) / Σ K(x_i, x) over the test sample's pathway ω of the
/// critical layers, applied at each neighbour's last position.
///
/// Parametrisation: per critical layer, only the core experts C (the `coreExperts` the router
/// ranks highest for the test sample) move, as ω_C = m · softmax(θ) with m the start's mass on C
/// (so the layer still sums to the start's total and the other experts keep their weights);
/// θ starts at log ω_C. Each step is θ ← θ − η ∂L/∂θ, where
/// ∂L/∂θ_j = m σ_j (G_j − Σ_{e∈C} σ_e G_e) and G = ∂L/∂ω from the engine's tail backward
/// (`tailGradient`), exact through the model's own top-k and `norm_topk_prob`: an expert outside
/// a neighbour's top-k receives gradient only through the normalisations (none when the family
/// renormalises the k chosen weights), so the chosen set changes when a chosen expert's weight
/// falls below an unchosen one. The result is the iterate with the lowest L seen (the start
/// included), so NGD never ends worse on its own objective than where it began.
public enum NeighbourhoodGradient {
    public struct Result {
        public var override: RoutingOverride
        /// L at the start and at the returned iterate.
        public var startLoss: Float
        public var loss: Float
        /// Steps taken (gradient evaluations of every neighbour).
        public var steps: Int
        /// The test question's label logits at the returned iterate (they ride along with the
        /// neighbours' forwards); nil without an `answer`.
        public var answerLogits: [Float]?
    }

    /// The test question itself, as an extra row of every forward (with no loss, so no backward
    /// reaches it): its label logits at each iterate come with the neighbours' (the weights are
    /// streamed once for all rows), so the answer at the best iterate needs no tail of its own.
    public struct Answer {
        public var state: PrefillState
        public var labelIDs: [Int]
        public init(state: PrefillState, labelIDs: [Int]) { self.state = state; self.labelIDs = labelIDs }
    }

    /// One test question's NGD: where ω starts, the experts that move per layer, its neighbours,
    /// and (optionally) the question itself riding along.
    public struct Problem {
        public var start: RoutingOverride
        public var core: [Int: [Int]]
        public var neighbours: [NGDNeighbor]
        public var answer: Answer?
        public init(start: RoutingOverride, core: [Int: [Int]], neighbours: [NGDNeighbor], answer: Answer? = nil) {
            self.start = start; self.core = core; self.neighbours = neighbours; self.answer = answer
        }
    }

    /// Per problem, the neighbours' kernel-weighted mean loss at its iterate, its gradient (when
    /// asked) and its answer's label logits (with an `answer`; that row has no loss, so nothing
    /// flows back from it). Every problem's rows, each under its problem's iterate, are one batch
    /// of the engine: the weights are streamed once per call for all of them.
    static func objective(model: RoutedMoEModel, _ iterates: [RoutingOverride], _ problems: [Problem], gradient: Bool = true) throws
        -> [(loss: Float, gradient: [Int: [Float]], answerLogits: [Float]?)] {
        var states: [PrefillState] = [], overrides: [RoutingOverride] = [], rows: [[Int]] = [], targets: [Int?] = []
        var spans: [Range<Int>] = [] // per problem, its rows in the batch (the answer's last)
        for (p, o) in zip(problems, iterates) {
            let first = states.count
            for n in p.neighbours where n.weight > 0 { states.append(n.state); rows.append(n.labelIDs); targets.append(n.gold) }
            if let a = p.answer { states.append(a.state); rows.append(a.labelIDs); targets.append(nil) }
            overrides += Array(repeating: o, count: states.count - first)
            spans.append(first..<states.count)
        }
        let gradients = try model.tailGradients(states, overrides: overrides, rows: rows, targets: targets, gradient: gradient)
        return zip(problems, spans).map { p, span in
            let total = p.neighbours.reduce(Float(0)) { $0 + $1.weight }
            var loss: Float = 0
            var grad: [Int: [Float]] = [:]
            for (n, g) in zip(p.neighbours.filter { $0.weight > 0 }, gradients[span]) {
                let w = n.weight / total
                loss += w * g.loss
                for (l, v) in g.omega {
                    var acc = grad[l] ?? [Float](repeating: 0, count: v.count)
                    for e in v.indices { acc[e] += w * v[e] }
                    grad[l] = acc
                }
            }
            return (loss, grad, p.answer == nil ? nil : gradients[span.upperBound - 1].logits)
        }
    }

    /// Runs the steps from `start` (the critical layers' weights over all experts). `core` per
    /// layer: the experts that move. Nil when no neighbour carries kernel weight.
    public static func optimise(model: RoutedMoEModel, start: RoutingOverride, core: [Int: [Int]],
                                neighbours: [NGDNeighbor], parameters p: NGDParameters, answer: Answer? = nil) throws -> Result? {
        try optimise(model: model, [Problem(start: start, core: core, neighbours: neighbours, answer: answer)], parameters: p)[0]
    }

    /// Several questions' NGD in lockstep: each problem's steps are its own (the result of each is
    /// what it would be alone, up to the rounding of products over more rows), but every step is
    /// one engine batch of all their rows, so the weights are read once per step for all of them.
    /// Nil for a problem whose neighbours carry no kernel weight.
    public static func optimise(model: RoutedMoEModel, _ problems: [Problem], parameters p: NGDParameters) throws -> [Result?] {
        try p.validate()
        let live = problems.indices.filter { i in
            let total = problems[i].neighbours.reduce(Float(0)) { $0 + $1.weight }
            return total > 0 && total.isFinite
        }
        var results = [Result?](repeating: nil, count: problems.count)
        guard !live.isEmpty else { return results }
        var runs = live.map { Run(problems[$0]) }
        var evaluated = try objective(model: model, runs.map(\.current), runs.map(\.problem))
        for (i, e) in evaluated.enumerated() { runs[i].start(e) }
        for step in 0..<p.steps {
            for i in runs.indices { runs[i].step(learningRate: p.learningRate) }
            // The last iterate needs only its loss (is it the best?), not a gradient.
            evaluated = try objective(model: model, runs.map(\.current), runs.map(\.problem), gradient: step < p.steps - 1)
            for (i, e) in evaluated.enumerated() { runs[i].evaluated(e) }
        }
        for (i, r) in zip(live, runs) {
            results[i] = Result(override: r.best.override, startLoss: r.startLoss, loss: r.best.loss, steps: p.steps, answerLogits: r.answerLogits)
        }
        return results
    }

    /// One problem's iterates: θ per layer over its core experts, and the core mass m.
    private struct Run {
        let problem: Problem
        var theta: [Int: [Float]] = [:], mass: [Int: Float] = [:]
        var sigma: [Int: [Float]] = [:]
        var current: RoutingOverride
        var grad: [Int: [Float]] = [:]
        var best: (override: RoutingOverride, loss: Float)
        var startLoss: Float = 0
        var answerLogits: [Float]?

        init(_ problem: Problem) {
            self.problem = problem
            current = problem.start
            best = (problem.start, .infinity)
            for (l, w) in problem.start.layers {
                let c = problem.core[l] ?? []
                mass[l] = c.reduce(Float(0)) { $0 + w[$1] }
                theta[l] = c.map { Float(log(Double(max(w[$0], 1e-30)))) }
            }
            sigma = Self.shares(theta)
        }

        /// softmax(θ) per layer: the core experts' shares of m.
        static func shares(_ theta: [Int: [Float]]) -> [Int: [Float]] {
            theta.mapValues { t in
                var s = t
                s.withUnsafeMutableBufferPointer { MatMul.softmax($0.baseAddress!, count: $0.count) }
                return s
            }
        }

        mutating func start(_ e: (loss: Float, gradient: [Int: [Float]], answerLogits: [Float]?)) {
            startLoss = e.loss; best = (current, e.loss); grad = e.gradient; answerLogits = e.answerLogits
        }

        mutating func evaluated(_ e: (loss: Float, gradient: [Int: [Float]], answerLogits: [Float]?)) {
            grad = e.gradient
            if e.loss < best.loss { best = (current, e.loss); answerLogits = e.answerLogits }
        }

        /// θ ← θ − η ∂L/∂θ, and the pathway at the new θ.
        mutating func step(learningRate eta: Float) {
            for (l, t) in theta {
                guard let m = mass[l], m > 0, let c = problem.core[l], let g = grad[l], let s = sigma[l] else { continue }
                let mean = zip(c, s).reduce(Float(0)) { $0 + $1.1 * g[$1.0] }
                theta[l] = t.indices.map { i in t[i] - eta * m * s[i] * (g[c[i]] - mean) }
            }
            sigma = Self.shares(theta)
            var o = problem.start
            for (l, s) in sigma {
                guard let m = mass[l], m > 0, let c = problem.core[l], !c.isEmpty else { continue }
                var w = o.layers[l]!
                for (i, e) in c.enumerated() { w[e] = m * s[i] }
                o.layers[l] = w
            }
            current = o
        }
    }
}

/// Neighbours' prefill states kept across test questions (neighbours recur), evicting the least
/// recently used past a byte budget. Only what tail work needs is kept (`PrefillState.keepingTail`).
public final class PrefillCache {
    public let budgetBytes: Int
    public private(set) var bytes = 0
    private var entries: [Int: (state: PrefillState, bytes: Int, used: Int)] = [:]
    private var clock = 0

    public init(budgetBytes: Int) { self.budgetBytes = budgetBytes }

    /// The state of `key`, made by `make` on a miss.
    public func state(_ key: Int, make: () throws -> PrefillState?) rethrows -> PrefillState? {
        clock += 1
        if let e = entries[key] {
            entries[key]?.used = clock
            return e.state
        }
        guard let s = try make() else { return nil }
        let size = s.byteCount
        entries[key] = (s, size, clock)
        bytes += size
        while bytes > budgetBytes, entries.count > 1, let victim = entries.filter({ $0.key != key }).min(by: { $0.value.used < $1.value.used }) {
            bytes -= victim.value.bytes
            entries[victim.key] = nil
        }
        return s
    }
}
