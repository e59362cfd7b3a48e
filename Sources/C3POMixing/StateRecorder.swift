import C3POCore
import C3POIndex
import C3POModel
import Foundation

/// `c3po-index build --cache-states`: runs the model over each record's prompt and stores what
/// tail work from the lowest critical layer up needs of that prefill (StoredStates.swift), so that
/// `c3po-apply --method ngd` runs no prefill of a neighbour. One prefill a record, written as it
/// comes (memory: one state). A record whose prompt the model cannot run gets no state.
public struct PrefillStateRecorder: IndexStateRecorder {
    public var model: RoutedMoEModel
    public var progress: Bool

    public init(model: RoutedMoEModel, progress: Bool = true) { self.model = model; self.progress = progress }

    func snapshot(_ r: ReferenceRecord, fromLayer: Int) throws -> TailSnapshot? {
        guard let prompt = r.prompt else { return nil }
        let tokens = try model.encode(prompt)
        guard !tokens.isEmpty, tokens.count <= model.maxContext else { return nil }
        return try model.snapshot(try model.prefillTail(tokens, fromLayer: fromLayer), fromLayer: fromLayer)
    }

    public func writeStates(of records: [ReferenceRecord], fromLayer: Int, into folder: URL) throws -> IndexManifest.States {
        // The shapes come from the first state: layers from `fromLayer` up, kv width, hidden.
        var first: (Int, TailSnapshot)?
        for (i, r) in records.enumerated() { if let s = try snapshot(r, fromLayer: fromLayer) { first = (i, s); break } }
        guard let (firstRow, firstState) = first else {
            throw ReferenceIndexError.badArgument("--cache-states: no record has a prompt the model can run, so no state can be stored")
        }
        let writer = try StoredStates.Writer(folder: folder, fromLayer: fromLayer, layers: firstState.keys.count,
                                             keyValueWidth: firstState.keys[0].count / firstState.tokens.count,
                                             hidden: firstState.lastInputs[0].count)
        let reporter = ProgressReporter("storing neighbour states", total: records.count, enabled: progress)
        for (i, r) in records.enumerated() {
            let s = i < firstRow ? nil : i == firstRow ? firstState : try snapshot(r, fromLayer: fromLayer)
            try writer.append(s)
            reporter.update(i + 1)
        }
        var shape = try writer.finish()
        shape.model = model.identity
        return shape
    }
}

extension ReferencePool {
    /// The pool's stored states if they can serve `model` from `fromLayer` up, else nil and why not
    /// (another checkpoint or tokenizer, or states that begin above `fromLayer`). Decided once per run.
    public func usableStates(for model: RoutedMoEModel, fromLayer: Int) -> (states: StoredStates.Reader?, whyNot: String?) {
        guard let stored = states else { return (nil, nil) }
        let shape = stored.shape, given = model.identity
        guard let m = shape.model else { return (nil, "they name no model") }
        if m.configSHA256 != given.configSHA256 { return (nil, "they are prefills of model '\(m.id)' (config sha256 \(m.configSHA256.prefix(12))…), not of '\(given.id)'") }
        if let a = m.tokenizerSHA256, let b = given.tokenizerSHA256, a != b { return (nil, "they were made with another tokenizer.json") }
        if shape.fromLayer > fromLayer { return (nil, "they begin at layer \(shape.fromLayer), above this run's lowest critical layer \(fromLayer)") }
        return (stored, nil)
    }

    /// The stored state of reference `row` in `stored` (from `usableStates`) as a prefill state of
    /// `model` kept from `fromLayer` up; nil when the index stores none for it. `tokens`, the
    /// prompt as the model encodes it now, must be what was stored: else the tokenizer changed.
    func storedState(_ row: Int, in stored: StoredStates.Reader, tokens: [Int], model: RoutedMoEModel, fromLayer: Int) throws -> PrefillState? {
        guard let e = try stored.entry(row) else { return nil }
        guard e.tokens == tokens else {
            throw MixingError.shapeMismatch("the index's stored state of reference '\(references[row].id)' was made from \(e.tokens.count) other tokens than the model's tokenizer gives its prompt now (\(tokens.count)): rebuild the index with --cache-states for this model")
        }
        return try model.restore(e).keepingTail(from: fromLayer)
    }
}
