// The SDK's Kotlin bindings against a real server (tests/tests/bindings.rs
// starts it and sets SB_HTTP, SB_SMS, SB_ROBOT_ID, SB_ROBOT_SECRET).

import java.net.URI
import java.net.URLEncoder
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import uniffi.switchboard_sdk.*

const val WAIT_MS = 10_000L

fun env(name: String): String = System.getenv(name) ?: error("$name is not set")

/** The SDK calls onEvent from its own thread; a channel hands events over. */
class Events : Listener {
    private val channel = Channel<Event>(Channel.UNLIMITED)

    override fun onEvent(event: Event) {
        channel.trySend(event)
    }

    suspend fun <T> until(what: String, pick: (Event) -> T?): T =
        try {
            withTimeout(WAIT_MS) {
                var found: T? = null
                while (found == null) found = pick(channel.receive())
                found
            }
        } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
            throw AssertionError("no $what within $WAIT_MS ms")
        }
}

fun check(ok: Boolean, what: () -> String) {
    if (!ok) throw AssertionError(what())
}

/** The one-time code the server sent to the SMS webhook. */
fun smsCode(phone: String): String =
    URI(env("SB_SMS") + "/code?phone=" + URLEncoder.encode(phone, "UTF-8")).toURL().readText()

/** The server from the environment; over TLS, trusting SB_CA_FILE's roots. */
fun config(device: String?) =
    Config(httpUrl = env("SB_HTTP"), mqttUrl = null, device = device, caFile = System.getenv("SB_CA_FILE"))

suspend fun signIn(phone: String, device: String): Pair<Session, Events> {
    val client = Switchboard(config(device))
    val e164 = client.requestCode(phone)
    val events = Events()
    return client.signIn(phone, smsCode(e164), events) to events
}

fun online(userId: String) = { e: Event ->
    if (e is Event.Presence && e.presence.userId == userId && e.presence.online) true else null
}

fun state(sid: String, s: CallStateKind) = { e: Event ->
    if (e is Event.CallState && e.call.sid == sid && e.call.state == s) e.call else null
}

val incoming = { e: Event -> if (e is Event.IncomingCall) e.call else null }

suspend inline fun <reified E : SdkException> expectError(block: () -> Unit) {
    try {
        block()
    } catch (e: SdkException) {
        check(e is E) { "expected ${E::class.simpleName}, got $e" }
        return
    }
    throw AssertionError("expected ${E::class.simpleName}")
}

fun main() = runBlocking {
    val (a, aEvents) = signIn("+48555000501", "phone")
    val (b, bEvents) = signIn("+48555000502", "tablet")
    println("signed in ${a.userId()} ${b.userId()}")

    a.setContacts(listOf(b.userId()))
    b.setContacts(listOf(a.userId()))
    a.watch(b.userId())
    b.watch(a.userId())
    aEvents.until("B online", online(b.userId()))
    bEvents.until("A online", online(a.userId()))
    println("online: each sees the other")

    var sid = a.call(b.userId(), CallKind.VIDEO)
    val call = bEvents.until("incoming call", incoming)
    check(call.sid == sid && call.caller == a.userId()) { "$call" }
    val accepted = b.accept(sid)
    check(accepted.state == CallStateKind.ACCEPTED && accepted.acceptedBy == b.clientId()) { "$accepted" }
    aEvents.until("accepted", state(sid, CallStateKind.ACCEPTED))
    check(a.hangup(sid).reason == EndReason.HANGUP) { "not hung up" }
    println("call $sid accepted and hung up")

    val robotEvents = Events()
    val robot = Switchboard(config(null)).signInRobot(env("SB_ROBOT_ID"), env("SB_ROBOT_SECRET"), robotEvents)
    val pairing = robot.startPairing()
    val code = pairing.code().code
    check(a.pair(code) == robot.userId()) { "paired with another robot" }
    check(pairing.wait() == a.userId()) { "the robot saw another owner" }
    println("paired with code $code")

    sid = a.call(robot.userId(), CallKind.VIDEO)
    robot.accept(robotEvents.until("robot's incoming call", incoming).sid)
    aEvents.until("robot accepted", state(sid, CallStateKind.ACCEPTED))
    val pending = a.sendCommand(sid, "moveTo", """{"destination":"kitchen"}""")
    val request = robotEvents.until("command") { e -> if (e is Event.CommandRequest) e.request else null }
    check(request.command == "moveTo" && request.argumentsJson == """{"destination":"kitchen"}""") { "$request" }
    for (status in listOf("moving", "arrived")) {
        robot.respond(sid, "moveTo", request.requestId, status, "{}")
        val reply = pending.nextReply(10_000UL)
        check(reply.status == status) { "$reply" }
    }
    a.hangup(sid)
    println("robot moved: moving, arrived")

    expectError<SdkException.InvalidPhone> { Switchboard(config("x")).requestCode("not a number") }
    expectError<SdkException.UnknownUser> { a.call("0".repeat(32), CallKind.AUDIO) }
    expectError<SdkException.NoCall> { a.sendCommand("1".repeat(32), "moveTo", "") }
    expectError<SdkException.InvalidArgument> { a.pair("12") }
    expectError<SdkException.InvalidArgument> { Switchboard(config(null).copy(caFile = "/no/such/ca.pem")) }
    println("bad input: typed errors")

    for (s in listOf(a, b, robot)) s.signOut()
    println("ALL PASSED")
}
