import Foundation
import Testing
@testable import Provisioner

/// The documented `--json` outputs, compared whole with golden files after the parts
/// that differ between runs (the sandbox's directory, port, user prefix, UIDs, times)
/// are replaced by placeholders. Regenerate with DESA_UPDATE_GOLDEN=1, then read the diff.
@Suite("Golden JSON of desactl", .serialized)
struct GoldenJSONTests {
    func normalize(_ text: String, _ h: SandboxHarness) -> String {
        var s = text.replacingOccurrences(of: h.dir, with: "$SANDBOX")
            .replacingOccurrences(of: h.prefix, with: "$PREFIX")
            .replacingOccurrences(of: "127.0.0.1:\(h.port)", with: "127.0.0.1:$PORT")
        let rules: [(String, String)] = [
            (#"\b\#(h.uidBase / 1000)(\d{3})\b"#, "UID+$1"),
            (#"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"#, "$TIME"),
            (#"\d{8}T\d{6}Z"#, "$STAMP"),
            (#"("[a-z-]+": )\d+\.\d{4}"#, "$1" + "0.0"),
        ]
        for (pattern, template) in rules {
            s = s.replacingOccurrences(of: pattern, with: template, options: .regularExpression)
        }
        return s
    }

    func check(_ name: String, _ r: ProcessResult, _ h: SandboxHarness, status: Int32 = 0) throws {
        #expect(r.status == status, "\(name): \(r.message)")
        let text = normalize(r.stdout, h)
        let path = Support.golden + "/json/" + name + ".json"
        if ProcessInfo.processInfo.environment["DESA_UPDATE_GOLDEN"] == "1" {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let expected = try #require(AtomicFiles.read(path), "missing golden file \(path); run with DESA_UPDATE_GOLDEN=1")
        #expect(text == expected, "\(name) --json differs from \(path):\n\(text)")
    }

    @Test("tenant import, tenant list, tenant show and plan print the documented JSON")
    func outputs() throws {
        let h = try SandboxHarness("golden")
        defer { h.destroy() }
        let csv = try h.bandungSubset(3)
        try check("import-dry-run", try h.run("tenant", "import", csv, "--json", "--dry-run"), h)
        try check("import", try h.run("tenant", "import", csv, "--json"), h)
        try check("list", try h.run("tenant", "list", "--json"), h)
        let first = try #require(try h.tenants().first?["slug"] as? String)
        try check("show", try h.run("tenant", "show", first, "--json"), h)
        let c = try h.config()
        try FileManager.default.removeItem(atPath: c.nginx.sitesDir + "/\(first).conf")
        #expect(chmod(c.webRoot + "/\(first)", 0o755) == 0)
        try check("plan", try h.run("plan", "--json"), h)
    }
}
