import ArgumentParser
import C3POCore
import C3POEmbedding
import C3POIndex
import C3POMixing
import C3POModel
import Foundation

extension MixingMethod: ExpressibleByArgument {}
extension MixingKernel: ExpressibleByArgument {}
extension NeighborDraw: ExpressibleByArgument {}
extension AlphaChoice: ExpressibleByArgument {}
extension EmbedText: ExpressibleByArgument {}
extension AnswerMode: ExpressibleByArgument {}
extension NGDStart: ExpressibleByArgument {}

/// `c3po-apply run` (the default subcommand): answers a test set with the base model
/// and with C3PO re-mixing; per-sample JSONL, emitted pathways, a summary.
public struct RunCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Answer a test set with the base model and with C3PO re-mixing; report both.",
        discussion: """
        Per question: one full pass (the base answer and the router's own pathway), a re-mixed pathway for \
        the critical layers at the last prompt position, then only that position's tail is re-evaluated \
        for the C3PO answer. The index must come from the same model (config sha256, layers, experts): \
        another one is refused. --method oracle uses the gold answers: an upper bound for analysis only. \
        A run that is off target says so on stderr (warning: ...) and in the --json summary's "warnings": \
        test questions of tasks the index holds no references of, questions whose neighbours all lie below \
        --similarity-floor, prompts that do not end where the label is read, skipped questions.
        """
    )

    @OptionGroup public var indexOptions: IndexOptions

    @OptionGroup public var modelOptions: ModelOptions

    @Option(help: ArgumentHelp("Test set: JSONL in the dataset schema (Datasets/README.md), or the published evaluation format: a .json object case_id -> routing record (the gold letter from correct_answer, the prompt from input_text, the recorded model_answer kept as recorded_answer), or an archive of such files.", valueName: "file"))
    public var test: PathArgument

    @Option(help: ArgumentHelp("Settings of a published procedure: official (tianyi-lab/C3PO's olmoe_optimizer.py: --method neighbors, --k 3, no overlap cut, the last 5 layers, its instruction; on an index built with --embed-text prompt). Options given as well override the preset's; the summary lists what ran (README.md, Reproducing the published procedure).", valueName: "official"))
    public var preset: Preset?

    @Option(name: .customLong("method"), help: "Re-mixing method: kernel (kernel regression; the default), mode (mean-shift in pathway space), task (per-task weights of the index), neighbors (the published code's average), ngd (neighbourhood gradient descent on the neighbours' loss: exact tail gradients, --ngd-steps steps; README.md, NGD), none (base model), oracle (uses gold answers: upper bound, analysis only).")
    public var methodOption: MixingMethod?

    @Option(name: .customLong("k"), help: ArgumentHelp("Neighbours per question (default 3).", valueName: "n"))
    public var kOption: Int?

    @Option(help: "Kernel over question similarity (d = 1 - cosine): gaussian exp(-d^2 / 2h^2), cosine max(sim, 0), uniform.")
    public var kernel: MixingKernel = .gaussian

    @Option(help: ArgumentHelp("Gaussian kernel bandwidth h (default: the neighbours' tasks' values from the index, else 0.25).", valueName: "h"))
    public var bandwidth: Float?

    @Option(name: .customLong("critical-layers"), help: ArgumentHelp("Re-mix the last N routed layers (all of them if the model has fewer; default 5).", valueName: "n"))
    public var criticalLayersOption: Int?

    @Option(name: .customLong("core-experts"), help: ArgumentHelp("Re-weight only the N experts the router ranks highest for the sample in each critical layer.", valueName: "n"))
    public var coreExperts: Int = MixingDefaults.coreExperts

    @Option(help: ArgumentHelp("alpha in w <- alpha w + (1 - alpha) w_mixed, the share of the router's own routing: 'index' (per task, from the index), 'search' (the paper's per-sample search on the neighbours' loss; costly), or a number in [0, 1].", valueName: "index|search|A"))
    public var alpha: AlphaChoice = .index

    @Option(name: .customLong("ngd-init"), help: "--method ngd starts from: own (the sample's own routing) or kernel (the kernel-regression pathway).")
    public var ngdInit: NGDStart = NGDParameters().start

    @Option(name: .customLong("ngd-steps"), help: ArgumentHelp("--method ngd: gradient steps per question.", valueName: "n"))
    public var ngdSteps: Int = NGDParameters().steps

    @Option(name: .customLong("ngd-lr"), help: ArgumentHelp("--method ngd: step size on the core experts' softmax logits.", valueName: "eta"))
    public var ngdLearningRate: Float = NGDParameters().learningRate

    @Option(name: .customLong("ngd-batch"), help: ArgumentHelp("--method ngd: questions whose steps run together, one engine batch of all their neighbours per step (the weights are read once per step for all of them; each question's result is its own). 1 steps each question alone.", valueName: "n"))
    public var ngdBatch: Int = RunnerOptions().ngdBatch

    @Option(name: .customLong("state-cache-mb"), help: ArgumentHelp("--method ngd and --alpha search: MiB of neighbours' prefill states kept across questions (least recently used evicted).", valueName: "MiB"))
    public var stateCacheMB: Int = 1024

    @Option(name: .customLong("max-similarity"), help: ArgumentHelp("Drop references whose question similarity to the test question exceeds this (overlap; default 0.95; none with --preset official).", valueName: "s"))
    public var maxSimilarityOption: Float?

    @Option(name: .customLong("answer"), help: ArgumentHelp("How answers are read: letter (the label with the highest logit at the prompt's last position; the default) or generate (greedy decoding of up to --max-new-tokens with the override at every generated position, the letter read from the text by the published rules; the default with --preset official).", valueName: "letter|generate"))
    public var answerOption: AnswerMode?

    @Option(name: .customLong("max-new-tokens"), help: ArgumentHelp("With --answer generate: tokens generated at most per answer.", valueName: "n"))
    public var maxNewTokens: Int = 200

    @Option(help: ArgumentHelp("Text put before every prompt the model sees, for the base and the C3PO answer alike (default none; the published instruction with --preset official).", valueName: "text"))
    public var instruction: String?

    @Option(name: .customLong("similarity-floor"), help: ArgumentHelp("Warn about questions whose neighbours are all less similar than this (cosine).", valueName: "s"))
    public var similarityFloor: Float = RunnerOptions().similarityFloor

    @Option(help: "How neighbours are chosen: similar (the k most similar successful references) or random (k successful references at random: an ablation that shows what retrieval contributes).")
    public var neighbors: NeighborDraw = .similar

    @Option(help: ArgumentHelp("Seed of --neighbors random.", valueName: "n"))
    public var seed: UInt64 = 0

    @Option(help: ArgumentHelp("Run only the first N questions.", valueName: "n"))
    public var limit: Int?

    @Option(help: ArgumentHelp("Per-question results, JSONL (id, task, gold, base/C3PO answers, neighbours, alpha, seconds, pathways of the critical layers; see README.md, The --out rows).", valueName: "file"))
    public var out: PathArgument?

    @Option(name: .customLong("emit-weights"), help: ArgumentHelp("Write the re-mixed pathways, {id: {\"layers\": [...]}} in the official record form, for a PyTorch engine.", valueName: "file"))
    public var emitWeights: PathArgument?

    @Option(help: ArgumentHelp("Also write the run's HTML report (c3po-apply report --help).", valueName: "file.html"))
    public var report: PathArgument?

    @Option(help: ArgumentHelp("Answer one shard of the test set: K/N, auto or auto/N (as c3po-index build --shard; questions by a stable hash of their id, after --limit). Needs --out; beside it goes OUT.shard.json, and `c3po-apply merge-results` joins the parts into one run.", valueName: "K/N|auto"))
    public var shard: String?

    @Flag(help: "Print the summary as JSON on stdout (with \"warnings\": what was off target).")
    public var json = false

    @Flag(help: "No progress lines on stderr.")
    public var quiet = false

    @OptionGroup public var embedderOptions: EmbedderOptions

    public init() {}

    /// Named sets of settings (`--preset`).
    public enum Preset: String, ExpressibleByArgument, CaseIterable, Sendable {
        case official

        /// The instruction the published code puts before every re-inference prompt.
        public static let officialInstruction = "Answer with only a single letter (A, B, C, or D) representing the correct option. Do not explain your reasoning. Just output the letter of the answer. "
    }

    // The settings in effect: what was given, else the preset's, else the defaults.
    var method: MixingMethod { methodOption ?? (preset == .official ? .neighbors : .kernel) }
    var k: Int { kOption ?? MixingDefaults.k }
    var criticalLayers: Int { criticalLayersOption ?? MixingDefaults.criticalLayerCount }
    /// The published code keeps every neighbour, however similar (a test question finds itself).
    var maxSimilarity: Float { maxSimilarityOption ?? (preset == .official ? .infinity : MixingDefaults.maxSimilarity) }
    var instructionText: String { instruction ?? (preset == .official ? Preset.officialInstruction : "") }
    var answer: AnswerMode { answerOption ?? (preset == .official ? .generate : .letter) }

    /// What ran, for the summary (with a preset, or any setting a preset implies).
    var settings: [String: String]? {
        guard preset != nil || instruction != nil || answerOption != nil else { return nil }
        return ["preset": preset?.rawValue ?? "none", "method": method.rawValue, "k": "\(k)", "critical_layers": "\(criticalLayers)",
                "max_similarity": maxSimilarity.isFinite ? "\(maxSimilarity)" : "none", "instruction": instructionText,
                "answer": answer.rawValue + (answer == .generate ? " (up to \(maxNewTokens) tokens)" : "")]
    }

    public func validate() throws {
        guard k >= 1 else { throw ValidationError("--k must be at least 1, got \(k)") }
        guard criticalLayers >= 1 else { throw ValidationError("--critical-layers must be at least 1, got \(criticalLayers)") }
        guard coreExperts >= 1 else { throw ValidationError("--core-experts must be at least 1, got \(coreExperts)") }
        if let b = bandwidth, !(b.isFinite && b > 0) { throw ValidationError("--bandwidth must be positive, got \(b)") }
        if let l = limit, l < 1 { throw ValidationError("--limit must be at least 1, got \(l)") }
        if let m = maxSimilarityOption, !m.isFinite { throw ValidationError("--max-similarity must be a number") }
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be at least 1, got \(maxNewTokens)") }
        guard ngdSteps >= 0 else { throw ValidationError("--ngd-steps must not be negative, got \(ngdSteps)") }
        guard ngdLearningRate.isFinite, ngdLearningRate > 0 else { throw ValidationError("--ngd-lr must be positive, got \(ngdLearningRate)") }
        guard ngdBatch >= 1 else { throw ValidationError("--ngd-batch must be at least 1, got \(ngdBatch)") }
        guard stateCacheMB >= 0 else { throw ValidationError("--state-cache-mb must not be negative, got \(stateCacheMB)") }
        guard similarityFloor.isFinite else { throw ValidationError("--similarity-floor must be a number") }
        if shard != nil {
            _ = try shardSpec()
            guard out != nil else { throw ValidationError("--shard needs --out PART.jsonl (c3po-apply merge-results joins the parts)") }
            guard report == nil else { throw ValidationError("--report with --shard: write the report from the merged run (merge-results --out, then c3po-apply report)") }
        }
    }

    func shardSpec() throws -> ShardSpec? { try ShardSpec.option(shard) }

    /// The options that make two runs the same run (a part of a sharded run records them).
    var runIdentity: String {
        "method=\(method.rawValue) k=\(k) kernel=\(kernel.rawValue) bandwidth=\(bandwidth.map { "\($0)" } ?? "index") "
            + "critical-layers=\(criticalLayers) core-experts=\(coreExperts) alpha=\(alpha) max-similarity=\(maxSimilarity) "
            + "neighbors=\(neighbors.rawValue) seed=\(seed) limit=\(limit.map(String.init) ?? "none") "
            + "instruction=\(instructionText.debugDescription) answer=\(answer.rawValue) max-new-tokens=\(maxNewTokens)"
            + (method == .ngd ? " ngd-init=\(ngdInit.rawValue) ngd-steps=\(ngdSteps) ngd-lr=\(ngdLearningRate)" : "")
    }

    public func run() throws {
        _ = try indexOptions.directory()
        let testURL = try InputPaths.file(test, "test file")
        let testSet = try TestSet.load(testURL)
        let questions = testSet.questions
        // A shard answers its share of the (limited) test set; the positions let merge-results restore the order.
        let shard = try shardSpec()
        let limited = limit.map { Array(questions.prefix($0)) } ?? questions
        let positions = shard.map { s in limited.indices.filter { s.contains(limited[$0].id) } }
        let total = limited.count
        let refIndex = try indexOptions.load()
        let model = try modelOptions.load()
        try refIndex.checkCompatible(model: model.identity)
        let embedder = try embedderOptions.load()
        try refIndex.checkCompatible(embedder)

        var options = RunnerOptions()
        options.method = method; options.k = k; options.kernel = kernel; options.bandwidth = bandwidth
        options.criticalLayerCount = criticalLayers; options.coreExperts = coreExperts
        options.alpha = alpha
        options.maxSimilarity = maxSimilarity; options.limit = limit
        options.neighborDraw = neighbors; options.seed = seed
        options.embedBatchSize = embedderOptions.batchSize; options.progress = !quiet
        options.embedText = refIndex.manifest.embeddedText; options.instruction = instructionText
        options.answer = answer; options.maxNewTokens = maxNewTokens
        options.ngd = NGDParameters(steps: ngdSteps, learningRate: ngdLearningRate, start: ngdInit)
        options.stateCacheBytes = stateCacheMB << 20
        options.ngdBatch = ngdBatch
        if preset == .official, refIndex.manifest.embeddedText != .prompt {
            throw UsageError("--preset official embeds whole prompts, as the published code does: build the index with c3po-index build --embed-text prompt (\(refIndex.directory.path) embeds questions)")
        }
        options.similarityFloor = similarityFloor
        let runner = try C3PORunner(model: model, embedder: embedder, pool: try ReferencePool(index: refIndex),
                                    taskWeights: refIndex.taskWeights, options: options,
                                    defaultAlpha: Float(refIndex.manifest.mixing.alpha),
                                    defaultBandwidth: Float(refIndex.manifest.mixing.bandwidth))

        var lines = Data()
        var emitted: [String: Any] = [:]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let results = try runner.run(questions, answering: positions, onResult: { row, o in
            var r = row
            r.recordedAnswer = testSet.recordedAnswers[r.id]
            if out != nil { lines.append(try encoder.encode(r)); lines.append(0x0A) }
            if let o, emitWeights != nil { emitted[r.id] = o.officialObject() }
            if let why = r.skipped, !quiet { StandardError.warning("skipped \(r.id): \(why)") }
        }, onWarning: StandardError.warning)
        // Outputs are written only once the whole run succeeded (atomically).
        if let out { try AtomicWrite.write(lines, to: out.url) }
        if let shard, let out {
            let part = ResultPart(shard: shard, test: .init(path: test.typed, sha256: try SHA256Hasher.hexDigest(ofFile: testURL), questions: total),
                                  indexManifestSHA256: try SHA256Hasher.hexDigest(ofFile: refIndex.directory.appendingPathComponent(IndexFolder.manifestFile)),
                                  model: model.identity.configSHA256, run: runIdentity, method: method, similarityFloor: similarityFloor,
                                  neighborDraw: neighbors, heldTasks: runner.heldTasks.sorted(), positions: positions ?? [])
            try part.write(besides: out.url)
        }
        if let emitWeights {
            let data = try JSONSerialization.data(withJSONObject: emitted, options: [.sortedKeys, .prettyPrinted])
            try AtomicWrite.write(data, to: emitWeights.url)
        }
        if let report {
            let bytes = try ReportCommand.write(results: results, label: method.rawValue, index: refIndex, test: test.typed, questions: questions, to: report.url)
            if !quiet { StandardError.write("report: \(report) (\(ReportCommand.size(bytes)))\n") }
        }
        if !quiet, runner.restoredStates + runner.prefilledStates > 0 {
            StandardError.write("neighbour states: \(runner.restoredStates) read from the index's stored states, \(runner.prefilledStates) by prefill\n")
        }
        StageProfile.shared.report("c3po-apply") // C3PO_PROFILE=1
        var summary = RunSummary(results: results, method: method, warnings: runner.warnings)
        summary.settings = settings
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try enc.encode(summary), as: UTF8.self))
        } else {
            print(Self.table(summary))
        }
    }

    static func table(_ s: RunSummary) -> String {
        func pct(_ x: Double) -> String { String(format: "%6.1f%%", 100 * x) }
        var rows = ["method: \(s.method)"]
        if let set = s.settings {
            rows.append("settings: " + set.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.debugDescription)" }.joined(separator: ", "))
        }
        rows += [
                    "task                          total     base    c3po"]
        for (t, v) in s.byTask.sorted(by: { $0.key < $1.key }) {
            rows.append(t.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: " %7d ", v.total) + pct(v.baseAccuracy) + " " + pct(v.c3poAccuracy))
        }
        if s.total == 0 {
            rows.append("no question scored: all \(s.skipped) skipped (see the warnings)")
        } else {
            rows.append("all".padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: " %7d ", s.total) + pct(s.baseAccuracy) + " " + pct(s.c3poAccuracy))
        }
        rows.append("improved \(s.improved), worsened \(s.worsened), skipped \(s.skipped)")
        rows.append(String(format: "seconds per sample: base %.4f, c3po %.4f; overhead ratio %.3f",
                           s.baseSecondsPerSample, s.secondsPerSample, s.c3poOverheadRatio))
        return rows.joined(separator: "\n")
    }
}
