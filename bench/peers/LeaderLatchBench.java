/*
 * Apache Curator LeaderLatch contenders for `npm run bench -- handover`
 * (bench/handover.ts): N CuratorFramework clients in this JVM, each with a
 * LeaderLatch on the same path. The job "starts" when isLeader() is called.
 *
 * argv: connect sessionTimeoutMs n rounds path
 * Speaks the handover protocol on stdin/stdout (JSON lines), per round:
 *   -> {"event":"ready"}     one leader runs, the other n-1 latches wait, ~100 ms idle
 *   <- go                    -> the leader's latch.close(), timed until the next isLeader()
 *   -> {"event":"handover","ms":...}
 *   <- next                  -> {"event":"ops","ops":null}, then a fresh latch (always n)
 * then {"event":"done"}. Errors: {"event":"error","message":...}, exit 1. EOF on stdin: exit.
 * Compiled with javac into a temp dir at bench time; nothing of it is committed.
 */
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.retry.RetryNTimes;

public final class LeaderLatchBench {
  /** Every wait is bounded by one of these. */
  static final long START_MS = 20_000;
  static final long HANDOVER_MS = 10_000;
  static final long IDLE_MS = 100;

  /** One contender: a client and its current latch. */
  static final class Contender {
    final int id;
    final CuratorFramework client;
    LeaderLatch latch;

    Contender(int id, CuratorFramework client) {
      this.id = id;
      this.client = client;
    }
  }

  /** A job start: who, and System.nanoTime() when isLeader() was called. (No record: older JDKs compile it too.) */
  static final class Start {
    final Contender who;
    final LeaderLatch latch;
    final long at;

    Start(Contender who, LeaderLatch latch, long at) {
      this.who = who;
      this.latch = latch;
      this.at = at;
    }
  }

  static final LinkedBlockingQueue<Start> starts = new LinkedBlockingQueue<>();
  static final BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

  static void say(String json) {
    System.out.println(json);
    System.out.flush();
  }

  static void fail(String message) {
    say("{\"event\":\"error\",\"message\":\"" + message.replace("\\", "\\\\").replace("\"", "'") + "\"}");
    System.exit(1);
  }

  static void expect(String command) throws Exception {
    String line = stdin.readLine();
    if (line == null) System.exit(0); // the harness has gone
    if (!line.equals(command)) fail("expected " + command + ", got " + line);
  }

  static void join(Contender c, String path) throws Exception {
    LeaderLatch latch = new LeaderLatch(c.client, path, String.valueOf(c.id));
    latch.addListener(new LeaderLatchListener() {
      @Override
      public void isLeader() {
        starts.add(new Start(c, latch, System.nanoTime()));
      }

      @Override
      public void notLeader() {}
    });
    c.latch = latch;
    latch.start();
  }

  /** The next job start within `ms`, or a failure. */
  static Start nextStart(long ms, String what) throws Exception {
    Start start = starts.poll(ms, TimeUnit.MILLISECONDS);
    if (start == null) fail("no isLeader() within " + ms + " ms: " + what);
    return start;
  }

  public static void main(String[] args) throws Exception {
    String connect = args[0];
    int sessionTimeout = Integer.parseInt(args[1]);
    int n = Integer.parseInt(args[2]);
    int rounds = Integer.parseInt(args[3]);
    String path = args[4];
    String version = LeaderLatch.class.getPackage().getImplementationVersion();
    say("{\"event\":\"version\",\"version\":\"" + (version == null ? "" : version) + "\"}");

    List<Contender> contenders = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      CuratorFramework client = CuratorFrameworkFactory.newClient(connect, sessionTimeout, (int) START_MS, new RetryNTimes(3, 100));
      client.start();
      contenders.add(new Contender(i, client));
    }
    for (Contender c : contenders) {
      if (!c.client.blockUntilConnected((int) START_MS, TimeUnit.MILLISECONDS)) fail("client " + c.id + " not connected within " + START_MS + " ms");
    }
    for (Contender c : contenders) join(c, path);
    Start leader = nextStart(START_MS, "the first election");

    for (int round = 0; round < rounds; round++) {
      // Ready: one leader runs, and n latch nodes stand (the others wait behind it).
      long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(START_MS);
      while (contenders.get(0).client.getChildren().forPath(path).size() != n) {
        if (System.nanoTime() > deadline) fail("not " + n + " latch nodes within " + START_MS + " ms");
        Thread.sleep(10);
      }
      if (!starts.isEmpty()) fail("a second leader before round " + round);
      Thread.sleep(IDLE_MS);
      say("{\"event\":\"ready\"}");
      expect("go");
      long goneAt = System.nanoTime();
      leader.latch.close();
      Start next = nextStart(HANDOVER_MS, "after the leader's latch closed (round " + round + ")");
      if (next.who == leader.who) fail("the closed latch's client led again");
      say("{\"event\":\"handover\",\"ms\":" + (next.at - goneAt) / 1e6 + "}");
      expect("next");
      say("{\"event\":\"ops\",\"ops\":null}");
      join(leader.who, path); // a fresh latch on the old leader's client: n again
      leader = next;
    }
    say("{\"event\":\"done\"}");
    for (Contender c : contenders) c.latch.close();
    for (Contender c : contenders) c.client.close();
    System.exit(0);
  }
}
