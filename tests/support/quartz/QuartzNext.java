// Conformance harness for jobyard's cron port: asks the real Quartz 2.3 for next fire times.
// stdin lines: expr<TAB>afterEpochMillis<TAB>zoneId<TAB>count
// stdout per line: OK<TAB>t1,t2,... (epoch millis; "null" once Quartz has no more),
//                  ERR<TAB>message (constructor refused) or EXC<TAB>message (evaluation threw).
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.util.Date;
import java.util.TimeZone;
import org.quartz.CronExpression;

public final class QuartzNext {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            String[] parts = line.split("\t", -1);
            CronExpression cron;
            try {
                cron = new CronExpression(parts[0]);
            } catch (Exception e) {
                out.write("ERR\t" + String.valueOf(e.getMessage()).replace('\t', ' ').replace('\n', ' '));
                out.newLine();
                continue;
            }
            cron.setTimeZone(TimeZone.getTimeZone(parts[2]));
            long after = Long.parseLong(parts[1]);
            int count = Integer.parseInt(parts[3]);
            StringBuilder sb = new StringBuilder();
            try {
                Date d = new Date(after);
                for (int i = 0; i < count; i++) {
                    d = cron.getTimeAfter(d);
                    if (i > 0) {
                        sb.append(',');
                    }
                    if (d == null) {
                        sb.append("null");
                        break;
                    }
                    sb.append(d.getTime());
                }
                out.write("OK\t" + sb);
            } catch (Exception e) {
                out.write("EXC\t" + e.getClass().getName());
            }
            out.newLine();
        }
        out.flush();
    }
}
