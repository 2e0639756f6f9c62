package ftbridge.spill;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.spark.SimpleFutureAction;
import org.apache.spark.SparkContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.rdd.RDD;
import scala.runtime.AbstractFunction0;
import scala.runtime.AbstractFunction1;
import scala.runtime.AbstractFunction2;
import scala.runtime.BoxedUnit;

/**
 * The spill job of a conversion (an RDD of SpillWriter's JSON metadata rows), submitted
 * asynchronously, with each partition's row handed to the driver as soon as its task ends, so
 * the reads of the partitions already written run while the job writes the rest.
 *
 * Spark calls the result handler once per partition, on the driver, before the job counts as
 * done; so once {@link #isCompleted()} is true every row is in the queue. The job takes the
 * calling thread's local properties (its job group) as SparkContext.runJob does.
 */
public final class SpillJob {
    private final LinkedBlockingQueue<String> rows = new LinkedBlockingQueue<>();
    private final SimpleFutureAction<Object> future;

    public SpillJob(JavaRDD<byte[]> spilled) {
        RDD<byte[]> rdd = spilled.rdd();
        SparkContext sc = rdd.context();
        scala.collection.immutable.Range all = scala.collection.immutable.Range$.MODULE$.apply(0, rdd.getNumPartitions());
        future = sc.submitJob(rdd, new Joined(), all, new Handed(rows), new Nothing());
    }

    /** The rows that arrived, newline-separated: waits up to waitMs for the first, then takes
     *  all that are there; "" when none came. */
    public String take(long waitMs) throws InterruptedException {
        String first = rows.poll(waitMs, TimeUnit.MILLISECONDS);
        if (first == null) {
            return "";
        }
        List<String> more = new ArrayList<>();
        rows.drainTo(more);
        StringBuilder out = new StringBuilder(first);
        for (String row : more) {
            out.append('\n').append(row);
        }
        return out.toString();
    }

    public boolean isCompleted() {
        return future.isCompleted();
    }

    /** Returns once the job has ended; throws Spark's own exception when it failed (as runJob). */
    public void get() throws Exception {
        future.get();
    }

    public void cancel() {
        future.cancel();
    }

    /** A partition's rows (one JSON object each; none for the partitions a rebuild skips), joined. */
    static final class Joined extends AbstractFunction1<scala.collection.Iterator<byte[]>, String>
            implements java.io.Serializable {
        private static final long serialVersionUID = 1L;

        @Override
        public String apply(scala.collection.Iterator<byte[]> it) {
            StringBuilder out = new StringBuilder();
            while (it.hasNext()) {
                if (out.length() > 0) {
                    out.append('\n');
                }
                out.append(new String(it.next(), java.nio.charset.StandardCharsets.UTF_8));
            }
            return out.toString();
        }
    }

    /** On the driver: each finished partition's rows into the queue. */
    static final class Handed extends AbstractFunction2<Object, String, BoxedUnit> {
        private final LinkedBlockingQueue<String> rows;

        Handed(LinkedBlockingQueue<String> rows) {
            this.rows = rows;
        }

        @Override
        public BoxedUnit apply(Object partition, String joined) {
            if (!joined.isEmpty()) {
                for (String row : joined.split("\n")) {
                    rows.add(row);
                }
            }
            return BoxedUnit.UNIT;
        }
    }

    static final class Nothing extends AbstractFunction0<Object> {
        @Override
        public Object apply() {
            return null;
        }
    }
}
