/// The config as people read it: every key with its value and its one line of
/// documentation, from the `@Setting` declarations. `desactl config check` prints a
/// file's effective config this way; `desactl config reference` prints the defaults,
/// which is the README's config table (a test keeps the two equal).
extension Config {
    /// Comments start in this column; a longer line gets two spaces before its comment.
    static let commentColumn = 33
    /// Comments wrap onto lines of their own, aligned, past this width.
    static let width = 110

    public func annotatedTOML() -> String {
        var out: [String] = []
        out += Self.annotated("mode = " + TOMLWriter.quoted(mode.rawValue),
                              "\"production\", or \"sandbox\": desactl runs nginx, php-fpm (and pebble, MariaDB) itself")
        for s in [regency, paths, users] as [any ConfigSection] + allSections {
            let name = type(of: s).name
            out.append("[\(name)]")
            for setting in s.settings {
                if let value = setting.toml {
                    out += Self.annotated(TOMLWriter.key(setting.key) + " = " + value, setting.doc)
                } else if let tables = setting.nestedTables {
                    for (i, t) in tables.enumerated() {
                        out += Self.annotated("[\(name).\(TOMLWriter.key(setting.key)).\(TOMLWriter.key(t.name))]", i == 0 ? setting.doc : "")
                        for inner in t.settings {
                            out += Self.annotated(TOMLWriter.key(inner.key) + " = " + (inner.toml ?? "{}"), inner.doc)
                        }
                    }
                }
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// The defaults of every key, documented: the README's table.
    public static func reference() -> String {
        var c = Config()
        c.path = defaultPath
        return c.annotatedTOML()
    }

    static func annotated(_ line: String, _ doc: String) -> [String] {
        guard !doc.isEmpty else { return [line] }
        let indent = max(commentColumn, line.count + 2)
        var lines: [String] = []
        var current = line + String(repeating: " ", count: indent - line.count) + "#"
        for word in doc.split(separator: " ") {
            if current.count + 1 + word.count > width && !current.hasSuffix("#") {
                lines.append(current)
                current = String(repeating: " ", count: commentColumn) + "#"
            }
            current += " " + word
        }
        lines.append(current)
        return lines
    }
}
