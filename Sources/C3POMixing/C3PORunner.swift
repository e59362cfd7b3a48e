import C3POCore
import C3POEmbedding
import C3POIndex
import C3POModel
import Foundation

/// What `c3po-apply --method` selects.
public enum MixingMethod: String, CaseIterable, Sendable, Codable {
    case kernel, mode, task, neighbors, ngd, none, oracle

    /// The name printed in every output; the oracle says what it is wherever it appears.
    public var displayName: String {
        self == .oracle ? "oracle (uses gold answers: upper bound, analysis only)" : rawValue
    }
}

/// How an answer is read off the model (`c3po-apply --answer`).
public enum AnswerMode: String, CaseIterable, Sendable, Codable {
    /// The label with the highest logit at the prompt's last position (the default).
    case letter
    /// Greedy decoding with the override at every generated position, the letter taken from
    /// the text by the published code's rules (`OfficialAnswer.extract`).
    case generate
}

/// Which references are a question's neighbours.
public enum NeighborDraw: String, CaseIterable, Sendable, Codable {
    /// The k most similar successful references (the method).
    case similar
    /// k successful references at random (an ablation: the gain should vanish).
    case random
}

/// How α (and the kernel bandwidth) are chosen per sample.
public enum AlphaChoice: Sendable, Equatable, CustomStringConvertible {
    /// The values of the neighbours' tasks stored in the index (build-time
    /// leave-one-out), similarity-weighted; documented defaults when the index has none.
    case index
    /// The paper's per-sample search: every candidate α applied to every neighbour's own
    /// prompt, kernel-weighted loss on the neighbours' gold answers (real cost).
    case search
    case fixed(Float)

    public init?(argument: String) {
        switch argument {
        case "index": self = .index
        case "search": self = .search
        default:
            guard let a = Float(argument), a.isFinite, (0...1).contains(a) else { return nil }
            self = .fixed(a)
        }
    }

    public var description: String {
        switch self {
        case .index: return "index"
        case .search: return "search"
        case .fixed(let a): return "\(a)"
        }
    }
}

public struct RunnerOptions: Sendable {
    public var method: MixingMethod = .kernel
    public var k: Int = MixingDefaults.k
    public var kernel: MixingKernel = .gaussian
    /// Nil: from the index (per task) or the defaults.
    public var bandwidth: Float?
    public var criticalLayerCount: Int = MixingDefaults.criticalLayerCount
    public var coreExperts: Int = MixingDefaults.coreExperts
    public var alpha: AlphaChoice = .index
    public var maxSimilarity: Float = MixingDefaults.maxSimilarity
    public var neighborDraw: NeighborDraw = .similar
    /// Seed of `neighborDraw == .random`.
    public var seed: UInt64 = 0
    public var limit: Int?
    /// Candidate α values of `--alpha search`.
    public var alphaGrid: [Float] = AlphaSelection.alphaGrid
    /// Tail re-evaluations the oracle may spend per sample.
    public var oracleBudget: Int = 1024
    public var embedBatchSize: Int = 32
    public var progress: Bool = true
    /// A question whose neighbours are all less similar than this is counted in a warning
    /// (all-MiniLM-L6-v2 cosine: ARC-Challenge against OpenBookQA + SciQ, the paper's setting,
    /// has a best neighbour below 0.4 for 6 % of its questions; ARC-Easy against the testbed's
    /// villagers for every one).
    public var similarityFloor: Float = 0.4
    /// What is embedded of a test question: its `question` or its whole `prompt` (as the index did).
    public var embedText: EmbedText = .question
    /// Prefixed to every prompt the model sees, for the base and the C3PO answer alike.
    public var instruction: String = ""
    /// How answers are read: the label logits at the last prompt position, or generated text.
    public var answer: AnswerMode = .letter
    /// Tokens generated at most per answer with `answer == .generate` (the published code: 200).
    public var maxNewTokens: Int = 200
    /// `--method ngd`: steps, step size, start.
    public var ngd = NGDParameters()
    /// Bytes of neighbours' prefill states kept across questions (`--method ngd`, `--alpha search`).
    public var stateCacheBytes: Int = 1 << 30
    /// `--method ngd`: questions whose steps run in lockstep, as one engine batch per step (each
    /// question's result is its own; the weights are read once per step for all of them).
    public var ngdBatch: Int = 8

    public init() {}
}

public struct NeighborInfo: Codable, Sendable, Equatable {
    public var id: String
    public var task: String
    public var similarity: Float
}

/// One line of `--out`.
public struct SampleResult: Codable, Sendable {
    public var id: String
    public var task: String
    public var gold: String
    public var baseAnswer: String?
    public var c3poAnswer: String?
    public var baseCorrect: Bool
    public var c3poCorrect: Bool
    public var neighbors: [NeighborInfo]
    public var alpha: Float?
    public var bandwidth: Float?
    public var method: String
    /// Seconds of the base model's answer (tokenisation + full prefill).
    public var secondsBase: Double
    /// Seconds of the C3PO answer, base included: + embedding (batch share) + retrieval
    /// + re-mixing + tail re-evaluation.
    public var secondsC3PO: Double
    /// Why the sample was not run (never counted in the accuracies).
    public var skipped: String?
    /// For the report (absent in rows written before it; `recordRouting`, SampleRouting.swift):
    /// the question text, the critical layers, the router's and the re-mixed routing of
    /// those layers at the last position ({layer: [weight per expert]}; no `c3po_pathway`
    /// when the base routing was kept) and the core experts per layer the method re-weighted.
    public var question: String? = nil
    public var criticalLayers: [Int]? = nil
    public var basePathway: [Int: [Float]]? = nil
    public var c3poPathway: [Int: [Float]]? = nil
    public var coreExperts: [Int: [Int]]? = nil
    /// The answer the test file records for the question (published evaluation format), for comparison.
    public var recordedAnswer: String? = nil
    /// With `--answer generate`: the decoded prompt and continuation the letters were read from.
    public var baseText: String? = nil
    public var c3poText: String? = nil
    /// With `--method ngd`: the neighbours' kernel-weighted loss at the start and at the result.
    public var ngdLoss: [Float]? = nil

    enum CodingKeys: String, CodingKey {
        case id, task, gold, neighbors, alpha, bandwidth, method, skipped, question
        case baseAnswer = "base_answer"
        case c3poAnswer = "c3po_answer"
        case baseCorrect = "base_correct"
        case c3poCorrect = "c3po_correct"
        case secondsBase = "seconds_base"
        case secondsC3PO = "seconds_c3po"
        case criticalLayers = "critical_layers"
        case basePathway = "base_pathway"
        case c3poPathway = "c3po_pathway"
        case coreExperts = "core_experts"
        case recordedAnswer = "recorded_answer"
        case baseText = "base_text", c3poText = "c3po_text"
        case ngdLoss = "ngd_loss"
    }
}

/// What `--json` prints.
public struct RunSummary: Codable, Sendable {
    public struct TaskSummary: Codable, Sendable, Equatable {
        public var total: Int
        public var baseAccuracy: Double
        public var c3poAccuracy: Double
        enum CodingKeys: String, CodingKey {
            case total
            case baseAccuracy = "base_accuracy"
            case c3poAccuracy = "c3po_accuracy"
        }
    }

    public var total: Int
    public var baseAccuracy: Double
    public var c3poAccuracy: Double
    public var improved: Int
    public var worsened: Int
    public var byTask: [String: TaskSummary]
    public var secondsPerSample: Double
    public var baseSecondsPerSample: Double
    public var c3poOverheadRatio: Double
    public var method: String
    public var skipped: Int
    /// What was off target in the run (`C3PORunner.warnings`), each also written to stderr.
    public var warnings: [String]
    /// The settings in effect when a preset or an instruction was given (`c3po-apply --preset`).
    public var settings: [String: String]? = nil

    enum CodingKeys: String, CodingKey {
        case total, improved, worsened, method, skipped, warnings, settings
        case baseAccuracy = "base_accuracy"
        case c3poAccuracy = "c3po_accuracy"
        case byTask = "by_task"
        case secondsPerSample = "seconds_per_sample"
        case baseSecondsPerSample = "base_seconds_per_sample"
        case c3poOverheadRatio = "c3po_overhead_ratio"
    }

    public init(results: [SampleResult], method: MixingMethod, warnings: [String] = []) {
        self.warnings = warnings
        let run = results.filter { $0.skipped == nil }
        total = run.count
        skipped = results.count - run.count
        func acc(_ xs: [SampleResult], _ f: (SampleResult) -> Bool) -> Double {
            xs.isEmpty ? 0 : Double(xs.filter(f).count) / Double(xs.count)
        }
        baseAccuracy = acc(run) { $0.baseCorrect }
        c3poAccuracy = acc(run) { $0.c3poCorrect }
        improved = run.filter { !$0.baseCorrect && $0.c3poCorrect }.count
        worsened = run.filter { $0.baseCorrect && !$0.c3poCorrect }.count
        var tasks: [String: TaskSummary] = [:]
        for t in Set(run.map(\.task)) {
            let xs = run.filter { $0.task == t }
            tasks[t] = TaskSummary(total: xs.count, baseAccuracy: acc(xs) { $0.baseCorrect }, c3poAccuracy: acc(xs) { $0.c3poCorrect })
        }
        byTask = tasks
        let base = run.reduce(0) { $0 + $1.secondsBase }, c3po = run.reduce(0) { $0 + $1.secondsC3PO }
        secondsPerSample = run.isEmpty ? 0 : c3po / Double(run.count)
        baseSecondsPerSample = run.isEmpty ? 0 : base / Double(run.count)
        c3poOverheadRatio = base > 0 ? (c3po - base) / base : 0
        self.method = method.displayName
    }
}

public enum RunnerError: Error, CustomStringConvertible {
    case incompatibleIndex(String)
    case missing(String)

    public var description: String {
        switch self {
        case .incompatibleIndex(let s): return s
        case .missing(let s): return s
        }
    }
}

/// Answers a test set with the base model and with C3PO re-mixing.
///
/// Per sample: one full prefill (the base answer, and the router's own pathway ω), a
/// re-mixed pathway for the critical layers, then only the last position's tail from
/// the lowest critical layer up (`reevaluateTail`) for the C3PO answer.
public final class C3PORunner {
    public let model: RoutedMoEModel
    public let embedder: SentenceEmbedder
    public let pool: ReferencePool
    public let taskWeights: TaskWeights?
    public let options: RunnerOptions
    /// α and bandwidth when the index has no per-task values (its manifest's `mixing`).
    public let defaultAlpha: Float
    public let defaultBandwidth: Float
    public let criticalLayers: [Int]
    /// What the last `run` found off target (tasks the index lacks, neighbours below the
    /// similarity floor, prompts that do not end where the label is read, skipped questions).
    public private(set) var warnings: [String] = []
    /// Neighbour states made for tail work so far: read from the index's stored states, or by a prefill.
    public private(set) var restoredStates = 0
    public private(set) var prefilledStates = 0

    public init(model: RoutedMoEModel, embedder: SentenceEmbedder, pool: ReferencePool, taskWeights: TaskWeights?,
                options: RunnerOptions, defaultAlpha: Float = MixingDefaults.alpha,
                defaultBandwidth: Float = MixingDefaults.bandwidth) throws {
        guard pool.layers == model.layerCount, pool.experts == model.expertCount else {
            throw RunnerError.incompatibleIndex(
                "the index holds pathways of \(pool.layers) layers × \(pool.experts) experts; the model has \(model.layerCount) layers × \(model.expertCount) experts")
        }
        guard options.k >= 1 else { throw MixingError.invalidParameter("k must be at least 1 (got \(options.k))") }
        guard options.criticalLayerCount >= 1 else { throw MixingError.invalidParameter("critical layers must be at least 1") }
        if let b = options.bandwidth, !(b.isFinite && b > 0) { throw MixingError.invalidParameter("bandwidth must be positive (got \(b))") }
        if options.neighborDraw == .random, ![.kernel, .neighbors, .task, .ngd].contains(options.method) {
            throw MixingError.invalidParameter("random neighbours apply to --method kernel, neighbors, task or ngd (not \(options.method.rawValue))")
        }
        if options.method == .task, taskWeights?.tasks.values.contains(where: { $0.pathway != nil }) != true {
            throw RunnerError.missing("--method task needs per-task pathways (task_weights.json), which only an index built with --model has")
        }
        if options.alpha == .search || options.method == .ngd, pool.references.contains(where: { $0.correct && ($0.prompt == nil || $0.labels == nil) }) {
            let what = options.method == .ngd ? "--method ngd" : "--alpha search"
            throw RunnerError.missing("\(what) runs the model on the neighbours' prompts; this index's records carry no prompt or label set (build it with --model/--benchmark)")
        }
        if options.method == .ngd { try options.ngd.validate() }
        self.model = model; self.embedder = embedder; self.pool = pool; self.taskWeights = taskWeights
        self.options = options; self.defaultAlpha = defaultAlpha; self.defaultBandwidth = defaultBandwidth
        criticalLayers = CriticalLayers.last(options.criticalLayerCount, of: model.routedLayers)
        states = PrefillCache(budgetBytes: options.stateCacheBytes)
        storedStates = pool.usableStates(for: model, fromLayer: criticalLayers.min() ?? 0)
    }

    /// Neighbours' prefill states, kept across questions (`--method ngd`, `--alpha search`).
    public let states: PrefillCache
    /// The index's stored states when they serve this model and these critical layers (else why not).
    let storedStates: (states: StoredStates.Reader?, whyNot: String?)

    /// Runs `questions` (after `limit`); `onResult` gets each result and its override (nil
    /// for the base method or a skip) as soon as it is known, `onWarning` each warning (they
    /// are also in `warnings`).
    @discardableResult
    /// `answering`: positions (in the limited list) of the questions to answer, for one shard of
    /// a run: every question is still embedded and searched in one batch, as in the whole run, so
    /// that a shard's rows are the whole run's rows.
    public func run(_ questions: [MCQuestion], answering subset: [Int]? = nil,
                    onResult: (SampleResult, RoutingOverride?) throws -> Void = { _, _ in },
                    onWarning: (String) -> Void = { _ in }) throws -> [SampleResult] {
        warnings = []
        func warn(_ text: String) { warnings.append(text); onWarning(text) }
        let qs = options.limit.map { Array(questions.prefix($0)) } ?? questions
        let order = subset ?? Array(qs.indices)
        guard !qs.isEmpty, !order.isEmpty else { return [] }
        let needsNeighbours = Self.needsNeighbours(options.method)
        let answered = order.map { qs[$0] }
        if let w = Self.promptEndWarning(answered) { warn(w) }
        if needsNeighbours, let w = Self.absentTaskWarning(answered, held: heldTasks) { warn(w) }
        if options.method == .ngd || options.alpha == .search, let why = storedStates.whyNot {
            warn("the index's stored states are not used: \(why); every neighbour is prefilled")
        }
        var hits: [[Neighbor]] = Array(repeating: [], count: qs.count)
        var overlaps: [Set<Int>] = Array(repeating: [], count: qs.count)
        var embedShare = 0.0, searchShare = 0.0
        if needsNeighbours {
            let progress = ProgressReporter("embedding", total: qs.count, enabled: options.progress)
            let texts = qs.map { options.embedText == .prompt ? $0.prompt : $0.question }
            let (emb, te) = try timed { try embedder.embed(texts, batchSize: options.embedBatchSize, progress: progress) }
            guard emb.count == qs.count * pool.dimension else {
                throw RunnerError.incompatibleIndex("the embedder gives \(emb.count / max(qs.count, 1))-dimensional vectors; the index holds \(pool.dimension)")
            }
            let (h, ts) = try timed {
                switch options.neighborDraw {
                case .similar: return try pool.neighbors(emb, k: options.k, maxSimilarity: options.maxSimilarity)
                case .random: return pool.randomNeighbors(emb, k: options.k, maxSimilarity: options.maxSimilarity, seed: options.seed)
                }
            }
            hits = h
            if options.neighborDraw == .similar, let w = Self.similarityWarning(order.map { hits[$0] }, floor: options.similarityFloor) { warn(w) }
            if options.method == .mode {
                // rows too similar to the question are left out of the mean-shift as well
                let all = pool.search(emb, k: pool.count, maxSimilarity: 2, successfulOnly: false)
                overlaps = all.map { Set($0.filter { $0.similarity > options.maxSimilarity }.map(\.row)) }
            }
            embedShare = te / Double(qs.count)
            searchShare = ts / Double(qs.count)
        }
        let successRows = pool.references.indices.filter { pool.references[$0].correct }
        let modeSpace = options.method == .mode ? pool.flattened(rows: successRows, layers: criticalLayers) : []

        var results: [SampleResult] = []
        let progress = ProgressReporter("c3po-apply \(options.method.rawValue)", total: order.count, enabled: options.progress)
        func emit(_ r: SampleResult, _ override: RoutingOverride?) throws {
            try onResult(r, override); results.append(r); progress.update(results.count)
        }
        // NGD steps several questions in lockstep (one engine batch per step); every other method
        // answers a question at a time.
        let chunk = options.method == .ngd ? max(1, options.ngdBatch) : 1
        for first in stride(from: 0, to: order.count, by: chunk) {
            // The base pass of each question of the chunk (or why it is skipped).
            var slots: [Slot] = []
            for i in order[first..<min(first + chunk, order.count)] {
                let q = qs[i]
                var r = SampleResult(id: q.id, task: q.task, gold: q.goldLabel, baseAnswer: nil, c3poAnswer: nil,
                                     baseCorrect: false, c3poCorrect: false,
                                     neighbors: hits[i].map { NeighborInfo(id: pool.references[$0.row].id, task: pool.references[$0.row].task, similarity: $0.similarity) },
                                     alpha: nil, bandwidth: nil, method: options.method.displayName,
                                     secondsBase: 0, secondsC3PO: 0, skipped: nil)
                let labelIDs: [Int]
                do { labelIDs = try model.labelTokenIDs(q.labels) } catch {
                    r.skipped = "label set \(q.labels) is not usable with this model: \(error)"
                    slots.append(.skipped(r)); continue
                }
                var promptIDs: [Int] = []
                let ((state, tokens), tPrefill): ((PrefillState?, Int), Double) = try StageProfile.shared.time("base.prefill") { try timed {
                    let tokens = try model.encode(options.instruction + q.prompt)
                    promptIDs = tokens
                    guard !tokens.isEmpty, tokens.count <= model.maxContext else { return (nil, tokens.count) }
                    return (try model.prefill(tokens, override: nil), tokens.count)
                } }
                guard let state else {
                    r.skipped = tokens == 0 ? "empty prompt" : "prompt of \(tokens) tokens is longer than the model's context (\(model.maxContext))"
                    slots.append(.skipped(r)); continue
                }
                let baseLogits = labelIDs.map { state.logits[$0] }
                let base = MCScoring.argmax(baseLogits)
                r.baseAnswer = q.labels[base]
                r.baseCorrect = base == q.answerIndex
                var tBase = tPrefill
                if options.answer == .generate {
                    let ((letter, text), t) = try timed { try generatedAnswer(promptIDs, override: nil) }
                    r.baseAnswer = letter; r.baseCorrect = letter == q.goldLabel; r.baseText = text
                    tBase += t
                }
                slots.append(.ready(Prepared(index: i, result: r, state: state, labelIDs: labelIDs, promptIDs: promptIDs, base: base, secondsBase: tBase)))
            }
            // The C3PO answer of each question that has a base pass.
            let ready = slots.compactMap { if case .ready(let p) = $0 { return p } else { return nil } }
            var mixed: [(answer: Int, override: RoutingOverride?, alpha: Float?, bandwidth: Float?, ngdLoss: [Float]?, seconds: Double)] = []
            if options.method == .ngd {
                mixed = try ngdAnswers(ready.map { p in (p.state, p.labelIDs, hits[p.index]) })
            } else {
                for p in ready {
                    let ((answer, override, alpha, bandwidth), t) = try timed {
                        try c3poAnswer(qs[p.index], state: p.state, labelIDs: p.labelIDs, base: p.base, hits: hits[p.index], overlaps: overlaps[p.index],
                                       successRows: successRows, modeSpace: modeSpace)
                    }
                    mixed.append((answer, override, alpha, bandwidth, nil, t))
                }
            }
            var next = 0
            for slot in slots {
                let p: Prepared
                switch slot {
                case .skipped(let r): try emit(r, nil); continue
                case .ready(let ready): p = ready
                }
                let q = qs[p.index], m = mixed[next]
                next += 1
                var r = p.result, tMix = m.seconds
                r.ngdLoss = m.ngdLoss
                r.c3poAnswer = q.labels[m.answer]
                r.c3poCorrect = m.answer == q.answerIndex
                if options.answer == .generate {
                    // The override of the critical layers at every generated position, as published.
                    let ((letter, text), t) = try timed { try generatedAnswer(p.promptIDs, override: m.override) }
                    r.c3poAnswer = letter; r.c3poCorrect = letter == q.goldLabel; r.c3poText = text
                    tMix += t
                }
                r.alpha = m.alpha; r.bandwidth = m.bandwidth
                r.question = q.question
                r.recordRouting(base: p.state.routerProbs, override: m.override, criticalLayers: criticalLayers,
                                coreExperts: [.kernel, .mode, .task, .ngd].contains(options.method) ? min(options.coreExperts, model.expertCount) : nil)
                r.secondsBase = p.secondsBase
                r.secondsC3PO = p.secondsBase + (needsNeighbours ? embedShare + searchShare : 0) + tMix
                try emit(r, m.override)
            }
        }
        if let w = Self.skippedWarning(results) { warn(w) }
        return results
    }

    // MARK: off-target warnings

    /// Questions skipped (never scored).
    public static func skippedWarning(_ results: [SampleResult]) -> String? {
        let skipped = results.filter { $0.skipped != nil }
        guard let first = skipped.first else { return nil }
        return "\(skipped.count) of \(results.count) questions skipped, not scored (first: '\(first.id)': \(first.skipped ?? ""))"
    }

    /// The tasks the index holds successful references of.
    public var heldTasks: Set<String> { Set(pool.references.filter(\.correct).map(\.task)) }

    /// Whether `method` retrieves neighbours (all but the base and the oracle).
    public static func needsNeighbours(_ method: MixingMethod) -> Bool { method != .none && method != .oracle }

    /// Questions of tasks the index holds no successful reference of: their neighbours
    /// come from other tasks.
    public static func absentTaskWarning(_ qs: [MCQuestion], held: Set<String>) -> String? {
        let absent = qs.filter { !held.contains($0.task) }
        guard !absent.isEmpty else { return nil }
        let counts = Dictionary(grouping: absent, by: \.task).map { ($0.key, $0.value.count) }.sorted { $0.0 < $1.0 }
        let named = counts.prefix(5).map { "'\($0.0)' (\($0.1))" }.joined(separator: ", ") + (counts.count > 5 ? ", ..." : "")
        let heldNames = held.sorted()
        let heldList = heldNames.prefix(8).joined(separator: ", ") + (heldNames.count > 8 ? ", ... (\(heldNames.count) tasks)" : "")
        return "\(absent.count) of \(qs.count) questions are of tasks the index holds no references of: \(named); "
            + "their neighbours come from other tasks (the index holds \(heldList.isEmpty ? "none" : heldList))"
    }

    /// Questions whose neighbours are all below `floor`: re-mixed toward unrelated references.
    public static func similarityWarning(_ hits: [[Neighbor]], floor: Float) -> String? {
        let best = hits.map { $0.map(\.similarity).max() ?? -1 }
        let low = best.filter { $0 < floor }.sorted()
        guard !low.isEmpty else { return nil }
        let shown = low.filter { $0 > -1 }
        // Two decimals, rounded down, so that "highest" never reads as the floor itself.
        func down(_ x: Float) -> String { String(format: "%.2f", (x * 100).rounded(.down) / 100) }
        let spread = shown.isEmpty ? "" : " (their best: median \(down(shown[shown.count / 2])), highest \(down(shown[shown.count - 1])))"
        let pct = 100 * Double(low.count) / Double(hits.count)
        return String(format: "%d of %d questions (%.0f%%) have no neighbour with similarity %.2f or more", low.count, hits.count, pct, floor)
            + spread + ": they are re-mixed toward unrelated references"
    }

    /// Prompts that do not end where the label is read: the label (" A", with its space)
    /// is scored at the last prompt position, so the prompt must end with the answer cue
    /// ("...\nAnswer:"), not with whitespace or with its last option.
    public static func promptEndWarning(_ qs: [MCQuestion]) -> String? {
        func problem(_ q: MCQuestion) -> String? {
            if let last = q.prompt.unicodeScalars.last, CharacterSet.whitespacesAndNewlines.contains(last) {
                return "ends with whitespace \(String(q.prompt.suffix(12)).debugDescription)"
            }
            let lastLine = q.prompt.split(separator: "\n", omittingEmptySubsequences: false).last.map(String.init) ?? ""
            let trimmed = lastLine.drop { $0 == " " || $0 == "\t" }
            if let label = q.labels.first(where: { trimmed.hasPrefix($0 + ".") || trimmed.hasPrefix($0 + ")") }), !label.isEmpty {
                return "ends with its option \(String(lastLine.prefix(24)).debugDescription), with no answer cue such as 'Answer:'"
            }
            return nil
        }
        let bad = qs.compactMap { q in problem(q).map { (q.id, $0) } }
        guard let first = bad.first else { return nil }
        return "\(bad.count) of \(qs.count) prompts do not end where the label is read (first: '\(first.0)' \(first.1)); "
            + "the label, with its leading space, is scored right after the prompt's last character"
    }

    // MARK: per-sample re-mixing

    /// Greedy generation from `prompt` (the override at every position), the letter read from the
    /// decoded prompt and continuation by the published rules.
    private func generatedAnswer(_ prompt: [Int], override: RoutingOverride?) throws -> (String, String) {
        let generated = try model.generate(prompt, maxNewTokens: options.maxNewTokens, override: override)
        let text = model.text(of: prompt + generated)
        return (OfficialAnswer.extract(text), text)
    }

    private func c3poAnswer(_ q: MCQuestion, state: PrefillState, labelIDs: [Int], base: Int, hits: [Neighbor],
                            overlaps: Set<Int>, successRows: [Int], modeSpace: [Float]) throws
        -> (Int, RoutingOverride?, Float?, Float?) {
        let sample = state.routerProbs
        let neighbours = pathwayNeighbours(hits)
        let votes = neighbours.map { (task: $0.task, similarity: $0.similarity) }
        let fromLayer = criticalLayers.min() ?? 0

        func tail(_ o: RoutingOverride) throws -> Int {
            MCScoring.argmax(try model.reevaluateTail(state, fromLayer: fromLayer, override: o, rows: labelIDs))
        }

        switch options.method {
        case .none:
            return (base, nil, nil, nil)
        case .oracle:
            let (answer, o) = try oracle(q, state: state, labelIDs: labelIDs, base: base, successRows: successRows)
            return (answer, o, nil, nil)
        case .neighbors:
            guard let o = try NeighborAverage.override(neighbors: neighbours, layers: criticalLayers, experts: model.expertCount)
            else { return (base, nil, nil, nil) }
            return (try tail(o), o, nil, nil)
        case .ngd:
            preconditionFailure("--method ngd answers through ngdAnswers")
        case .kernel:
            var (a, b) = hyperParameters(neighbours)
            if options.alpha == .search {
                a = try searchAlpha(sample: sample, neighbours: neighbours, hits: hits, bandwidth: b)
            }
            let o = try KernelRegression.override(sample: sample, neighbors: neighbours, parameters: mixingParameters(alpha: a, bandwidth: b))
            return (try tail(o), o, a, b)
        case .mode:
            let (a, b) = hyperParameters(neighbours)
            let excluded = Set(successRows.indices.filter { overlaps.contains(successRows[$0]) })
            let o = try ModeFinding.override(sample: sample, references: modeSpace, count: successRows.count, k: options.k,
                                             excluded: excluded, parameters: mixingParameters(alpha: a, bandwidth: b))
            return (try tail(o), o, a, nil)
        case .task:
            let (a, b) = hyperParameters(neighbours)
            guard let name = taskWeights?.votedTask(neighbors: votes), let t = taskWeights?.tasks[name], let p = t.pathway
            else { return (base, nil, nil, nil) }
            var target: [Int: [Float]] = [:]
            for (j, l) in t.criticalLayers.enumerated() where p[j].count == model.expertCount { target[l] = p[j] }
            let o = KernelRegression.mixToward(sample: sample, target: target, parameters: mixingParameters(alpha: a, bandwidth: b))
            return (try tail(o), o, a, nil)
        }
    }

    /// The search hits with their recorded pathways and tasks.
    private func pathwayNeighbours(_ hits: [Neighbor]) -> [PathwayNeighbor] {
        hits.map { PathwayNeighbor(similarity: $0.similarity, pathway: pool.pathway($0.row), task: pool.references[$0.row].task) }
    }

    private func mixingParameters(alpha: Float, bandwidth: Float) -> MixingParameters {
        MixingParameters(criticalLayers: criticalLayers, coreExperts: min(options.coreExperts, model.expertCount),
                         alpha: alpha, kernel: options.kernel, bandwidth: bandwidth)
    }

    /// α and the bandwidth for a question with these neighbours: the options', else the index's
    /// per-task values (voted by the neighbours), else the defaults.
    private func hyperParameters(_ neighbours: [PathwayNeighbor]) -> (Float, Float) {
        let votes = neighbours.map { (task: $0.task, similarity: $0.similarity) }
        let fromIndex: (alpha: Float, bandwidth: Float) = taskWeights?.hyperParameters(
            neighbors: votes, defaultAlpha: defaultAlpha, defaultBandwidth: defaultBandwidth) ?? (defaultAlpha, defaultBandwidth)
        let b = options.bandwidth ?? fromIndex.bandwidth
        switch options.alpha {
        case .fixed(let a): return (a, b)
        case .index, .search: return (fromIndex.alpha, b)
        }
    }

    /// A question of a chunk: its base pass, waiting for its C3PO answer, or why it is skipped.
    private enum Slot {
        case ready(Prepared)
        case skipped(SampleResult)
    }

    /// A question's base pass, waiting for its C3PO answer.
    private struct Prepared {
        var index: Int
        var result: SampleResult
        var state: PrefillState
        var labelIDs: [Int]
        var promptIDs: [Int]
        var base: Int
        var secondsBase: Double
    }

    /// `--method ngd` for several questions at once: each one's start (its own routing or the
    /// kernel-regression pathway), core experts and neighbours' states, then all their steps in
    /// lockstep (`NeighbourhoodGradient.optimise` over the problems: one engine batch per step).
    /// Seconds per question: its own set-up and answer, and an equal share of the joint steps.
    private func ngdAnswers(_ questions: [(state: PrefillState, labelIDs: [Int], hits: [Neighbor])]) throws
        -> [(answer: Int, override: RoutingOverride?, alpha: Float?, bandwidth: Float?, ngdLoss: [Float]?, seconds: Double)] {
        guard !questions.isEmpty else { return [] }
        let fromLayer = criticalLayers.min() ?? 0
        let prof = StageProfile.shared
        var problems: [NeighbourhoodGradient.Problem] = [], setUp: [Double] = [], hyper: [(alpha: Float?, bandwidth: Float)] = []
        for (state, labelIDs, hits) in questions {
            let (problem, t): (NeighbourhoodGradient.Problem, Double) = try timed {
                let sample = state.routerProbs
                let neighbours = pathwayNeighbours(hits)
                let (a, b) = hyperParameters(neighbours)
                let start: RoutingOverride
                switch options.ngd.start {
                case .own: start = .identity(pathway: sample, layers: criticalLayers)
                case .kernel: start = try KernelRegression.override(sample: sample, neighbors: neighbours, parameters: mixingParameters(alpha: a, bandwidth: b))
                }
                hyper.append((options.ngd.start == .kernel ? a : nil, b))
                let core = Dictionary(uniqueKeysWithValues: criticalLayers.map { ($0, CoreExperts.select(sample[$0], count: min(options.coreExperts, model.expertCount))) })
                let states = try prof.time("ngd.neighbour_states") { try neighbourStates(hits, bandwidth: b) }
                return .init(start: start, core: core, neighbours: states, answer: .init(state: state, labelIDs: labelIDs))
            }
            problems.append(problem); setUp.append(t)
        }
        let (results, tSteps) = try prof.time("ngd.steps") { try timed { try NeighbourhoodGradient.optimise(model: model, problems, parameters: options.ngd) } }
        return try zip(questions, zip(problems, results)).enumerated().map { i, item in
            let ((state, labelIDs, _), (problem, result)) = item
            let ((answer, override, loss), tAnswer): ((Int, RoutingOverride, [Float]?), Double) = try timed {
                // No neighbour with kernel weight: the start's answer, by a tail of its own.
                guard let result else {
                    return (MCScoring.argmax(try model.reevaluateTail(state, fromLayer: fromLayer, override: problem.start, rows: labelIDs)), problem.start, nil)
                }
                let answer = try prof.time("ngd.answer") {
                    try result.answerLogits.map(MCScoring.argmax)
                        ?? MCScoring.argmax(try model.reevaluateTail(state, fromLayer: fromLayer, override: result.override, rows: labelIDs))
                }
                return (answer, result.override, [result.startLoss, result.loss])
            }
            return (answer, override, hyper[i].alpha, hyper[i].bandwidth, loss, setUp[i] + tSteps / Double(questions.count) + tAnswer)
        }
    }

    /// The paper's α selection: each candidate α's re-mixed pathway (for this sample)
    /// applied to every neighbour's own prompt, loss = kernel-weighted cross-entropy on
    /// the neighbours' gold answers; the lowest loss wins (ties: the larger α, closer to
    /// the router). Costs one prefill per neighbour and one tail per neighbour and α.
    private func searchAlpha(sample: [[Float]], neighbours: [PathwayNeighbor], hits: [Neighbor], bandwidth: Float) throws -> Float {
        let fromLayer = criticalLayers.min() ?? 0
        let states = try neighbourStates(hits, bandwidth: bandwidth)
        let total = states.reduce(Float(0)) { $0 + $1.weight }
        guard !states.isEmpty, total > 0 else { return 1 }
        var best: (loss: Float, alpha: Float)?
        for a in options.alphaGrid.sorted(by: >) {
            let o = try KernelRegression.override(sample: sample, neighbors: neighbours, parameters: mixingParameters(alpha: a, bandwidth: bandwidth))
            var loss: Float = 0
            for n in states where n.weight > 0 {
                loss += n.weight * MCScoring.crossEntropy(try model.reevaluateTail(n.state, fromLayer: fromLayer, override: o, rows: n.labelIDs), gold: n.gold)
            }
            loss /= total
            if best == nil || loss < best!.loss { best = (loss, a) }
        }
        return best?.alpha ?? 1
    }

    /// The neighbours' prefill states (from the cache, else one prefill each, kept from the lowest
    /// critical layer up), label rows, gold labels and kernel weights. A record with no prompt or
    /// label set, or one the model cannot run, cannot be scored: it is left out.
    private func neighbourStates(_ hits: [Neighbor], bandwidth: Float) throws -> [NGDNeighbor] {
        let fromLayer = criticalLayers.min() ?? 0
        var out: [NGDNeighbor] = []
        for h in hits {
            let ref = pool.references[h.row]
            guard let prompt = ref.prompt, let labels = ref.labels else { continue }
            guard let g = labels.firstIndex(of: ref.gold), let ids = try? model.labelTokenIDs(labels) else { continue }
            let state = try states.state(h.row) {
                let tokens = try model.encode(prompt)
                guard !tokens.isEmpty, tokens.count <= model.maxContext else { return nil }
                if let stored = storedStates.states, let restored = try pool.storedState(h.row, in: stored, tokens: tokens, model: model, fromLayer: fromLayer) {
                    restoredStates += 1
                    return restored
                }
                prefilledStates += 1
                return try model.prefillTail(tokens, fromLayer: fromLayer)
            }
            guard let state else { continue }
            out.append(NGDNeighbor(state: state, labelIDs: ids, gold: g, weight: options.kernel.weight(similarity: h.similarity, bandwidth: bandwidth)))
        }
        return out
    }

    /// Upper bound with the gold answer known (analysis only): tries routings of the
    /// critical layers, by tail re-evaluation, until one makes gold the argmax:
    /// (1) coordinate moves: in one critical layer, one expert outside the router's
    /// top-k is lifted just above the layer's maximum (so it enters the top-k);
    /// (2) every successful reference's pathway on the critical layers, most similar
    /// pathway first... in row order. Within `oracleBudget` tries.
    private func oracle(_ q: MCQuestion, state: PrefillState, labelIDs: [Int], base: Int, successRows: [Int]) throws -> (Int, RoutingOverride?) {
        if base == q.answerIndex { return (base, nil) }
        let fromLayer = criticalLayers.min() ?? 0
        let sample = state.routerProbs
        var tries = 0
        func attempt(_ o: RoutingOverride) throws -> Bool {
            tries += 1
            return MCScoring.argmax(try model.reevaluateTail(state, fromLayer: fromLayer, override: o, rows: labelIDs)) == q.answerIndex
        }
        for l in criticalLayers {
            let top = Set(CoreExperts.select(sample[l], count: model.topK))
            let peak = sample[l].max() ?? 0
            for e in 0..<model.expertCount where !top.contains(e) {
                guard tries < options.oracleBudget else { return (base, nil) }
                var o = RoutingOverride.identity(pathway: sample, layers: criticalLayers)
                var w = sample[l]
                w[e] = peak * 1.01 + 1e-6
                o.layers[l] = w
                if try attempt(o) { return (q.answerIndex, o) }
            }
        }
        for row in successRows {
            guard tries < options.oracleBudget else { break }
            let o = RoutingOverride.identity(pathway: pool.pathway(row), layers: criticalLayers)
            if try attempt(o) { return (q.answerIndex, o) }
        }
        return (base, nil)
    }
}
