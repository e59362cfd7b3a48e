/// The key naming one expert in the official routing form's `routing_weights`
/// (`{"expert_<i>": w}`, c3po-method.md): shared by the archive reader and the
/// engine's override parser and writer, so both accept and write the same keys.
public enum ExpertKey {
    public static func name(_ expert: Int) -> String { "expert_\(expert)" }

    /// `i` of `expert_<i>` where `i` is a decimal integer written as Python prints it
    /// (no '+', no leading zero). A negative `i` is returned, for the caller to report
    /// as out of range; nil for any other form.
    public static func index(_ key: String) -> Int? {
        guard key.hasPrefix("expert_") else { return nil }
        let digits = key.dropFirst(7)
        guard let e = Int(digits), String(e) == digits else { return nil }
        return e
    }
}
