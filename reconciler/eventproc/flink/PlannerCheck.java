/*
 * Plans many Flink SQL scripts in one JVM (flow-reconciler's planner check).
 *
 * Usage: java -cp <flink jars>:<stub classes> dev.flowreconciler.flinkstub.PlannerCheck LIST OUT
 * LIST holds one script path per line. For each script, in a fresh streaming
 * TableEnvironment, every statement but the last is executed (DDL: CREATE TABLE,
 * CREATE TEMPORARY VIEW) and the last, which must be an INSERT, is EXPLAINed, which
 * validates, optimises and translates it as a job submission would. OUT gets one
 * JSON object per script and line: {"index", "ok", "statements"} or, on failure,
 * {"index", "ok": false, "statement", "line", "error", "cause"} with Flink's messages.
 * Statements are split at semicolons outside quotes and comments.
 */
package dev.flowreconciler.flinkstub;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;

public final class PlannerCheck {
    private PlannerCheck() {}

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: PlannerCheck LIST OUT");
            System.exit(2);
        }
        List<String> paths = Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8);
        try (PrintStream out = new PrintStream(Files.newOutputStream(Path.of(args[1])), true, StandardCharsets.UTF_8)) {
            int index = 0;
            for (String path : paths) {
                if (path.isEmpty()) {
                    continue;
                }
                out.println(check(index++, Files.readString(Path.of(path), StandardCharsets.UTF_8)));
            }
        }
    }

    /** A statement of a script and the line (1-based) it starts on. */
    record Statement(String text, int line) {}

    static String check(int index, String script) {
        List<Statement> statements = split(script);
        int current = -1;
        try {
            if (statements.isEmpty()) {
                throw new IllegalArgumentException("the script holds no statement");
            }
            TableEnvironment env = TableEnvironment.create(EnvironmentSettings.inStreamingMode());
            for (current = 0; current < statements.size() - 1; current++) {
                env.executeSql(statements.get(current).text());
            }
            Statement last = statements.get(current);
            if (!last.text().stripLeading().toUpperCase(Locale.ROOT).startsWith("INSERT")) {
                throw new IllegalArgumentException("the last statement must be an INSERT INTO");
            }
            env.explainSql(last.text());
            return "{\"index\": " + index + ", \"ok\": true, \"statements\": " + statements.size() + "}";
        } catch (Throwable t) {
            Throwable root = t;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            String error = String.valueOf(t.getMessage());
            String cause = root == t || error.contains(String.valueOf(root.getMessage()))
                    ? "" : root.getClass().getSimpleName() + ": " + root.getMessage();
            int line = current >= 0 && current < statements.size() ? statements.get(current).line() : 0;
            return "{\"index\": " + index + ", \"ok\": false, \"statement\": " + current + ", \"line\": " + line
                    + ", \"error\": " + json(t.getClass().getSimpleName() + ": " + error)
                    + ", \"cause\": " + json(cause) + "}";
        }
    }

    /** Split at ';' outside '...' strings, `...` identifiers, "..." and comments; comments are dropped. */
    static List<Statement> split(String script) {
        List<Statement> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        int line = 1;
        int start = -1;
        int n = script.length();
        for (int i = 0; i < n; i++) {
            char c = script.charAt(i);
            if (c == '-' && i + 1 < n && script.charAt(i + 1) == '-') {
                while (i < n && script.charAt(i) != '\n') {
                    i++;
                }
                if (i < n) {
                    cur.append('\n');
                    line++;
                }
                continue;
            }
            if (c == '/' && i + 1 < n && script.charAt(i + 1) == '*') {
                int end = script.indexOf("*/", i + 2);
                end = end < 0 ? n : end + 2;
                for (int j = i; j < end; j++) {
                    if (script.charAt(j) == '\n') {
                        cur.append('\n');
                        line++;
                    }
                }
                cur.append(' ');
                i = end - 1;
                continue;
            }
            if (c == '\'' || c == '`' || c == '"') {
                if (start < 0) {
                    start = line;
                }
                int j = i + 1;
                while (j < n) {
                    if (script.charAt(j) == c) {
                        if (j + 1 < n && script.charAt(j + 1) == c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j++;
                }
                String quoted = script.substring(i, Math.min(j + 1, n));
                line += (int) quoted.chars().filter(ch -> ch == '\n').count();
                cur.append(quoted);
                i = j;
                continue;
            }
            if (c == ';') {
                if (!cur.toString().isBlank()) {
                    out.add(new Statement(cur.toString().strip(), start));
                }
                cur.setLength(0);
                start = -1;
                continue;
            }
            if (c == '\n') {
                line++;
            } else if (start < 0 && !Character.isWhitespace(c)) {
                start = line;
            }
            cur.append(c);
        }
        if (!cur.toString().isBlank()) {
            out.add(new Statement(cur.toString().strip(), start));
        }
        return out;
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
