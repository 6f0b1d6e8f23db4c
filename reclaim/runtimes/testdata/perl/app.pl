#!/usr/bin/perl
# A Perl EV (libev) program that leaks PTYs the way real ones do (issue 9).
# Run with Debian's /usr/bin/perl and libev-perl. Leaks: two masters
# watched with EV::io (EV::READ), their slaves open in this process, and an
# idle pair it watches only after the release. libev's epoll backend turns
# an EPERM from epoll_ctl into "always ready" and an EBADF into an error on
# every watcher of the fd. On EOF or an error the callback stops its
# watcher and closes both fds. It serves HTTP on 127.0.0.1 (a watcher on
# the listening socket) and keeps a live terminal running cat. Events go as
# JSON lines to $EVENTS.
use strict;
use warnings;
use EV;
use Errno qw(EAGAIN EINTR);
use Fcntl qw(O_RDWR O_NOCTTY O_NONBLOCK F_GETFL F_SETFL);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes ();

open(my $events, '>>', $ENV{EVENTS}) or exit 70;
$events->autoflush(1);
my $logged = 0;
my $json = JSON::PP->new->canonical;

sub ev {
	my ($kind, %kv) = @_;
	# A storm is counted, not all written; exit and close always are.
	return if ++$logged > 10000 && $kind ne 'exit' && $kind ne 'close';
	my $t = sprintf('%.0f', Time::HiRes::time() * 1e9);
	print $events $json->encode({ev => $kind, t => $t + 0, %kv}), "\n";
}

my $exit_code;
END { ev('exit', code => $exit_code) }
# An exception in a callback: EV reports it through $EV::DIED.
$EV::DIED = sub { ev('exception', msg => substr("$@", 0, 300)) };

# openpty without IO::Pty: /dev/ptmx, unlock, its number, the slave.
use constant { TIOCSPTLCK => 0x40045431, TIOCGPTN => 0x80045430, TIOCSCTTY => 0x540E };
sub openpty {
	sysopen(my $m, '/dev/ptmx', O_RDWR | O_NOCTTY) or die "ptmx: $!";
	my $unlock = pack('i', 0);
	ioctl($m, TIOCSPTLCK, $unlock) or die "unlockpt: $!";
	my $n = pack('i', 0);
	ioctl($m, TIOCGPTN, $n) or die "ptsname: $!";
	sysopen(my $s, '/dev/pts/' . unpack('i', $n), O_RDWR | O_NOCTTY) or die "pts: $!";
	return ($m, $s);
}

# A terminal running cat: its data must survive.
sub spawn_cat {
	my ($m, $s) = openpty();
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		POSIX::setsid();
		close $m;
		ioctl($s, TIOCSCTTY, 0) or POSIX::_exit(127);
		POSIX::dup2(fileno($s), $_) for 0 .. 2;
		exec('/bin/cat') or POSIX::_exit(127);
	}
	close $s;
	return {m => $m, pid => $pid};
}

# echo writes a word and waits up to 10 s for it to come back; undef or
# what went wrong.
sub echo {
	my ($l, $word) = @_;
	syswrite($l->{m}, "$word\n") or return "write failed: $!";
	my $sel = IO::Select->new($l->{m});
	my $seen = '';
	my $deadline = Time::HiRes::time() + 10;
	while (Time::HiRes::time() < $deadline) {
		next unless $sel->can_read(0.1);
		my $n = sysread($l->{m}, my $buf, 4096);
		return 'read failed' unless $n;
		$seen .= $buf;
		return undef if index($seen, $word) >= 0;
	}
	return "no echo of $word";
}

sub end_cat {
	my ($l) = @_;
	kill 'KILL', $l->{pid};
	waitpid($l->{pid}, 0);
	close $l->{m};
}

my $live = spawn_cat();
exit 70 if echo($live, 'before');

my @leaks = map { {name => $_} } qw(watch1 watch2 late);
for my $l (@leaks) {
	($l->{m}, $l->{s}) = openpty();
	fcntl($l->{m}, F_SETFL, fcntl($l->{m}, F_GETFL, 0) | O_NONBLOCK);
	$l->{mfd} = fileno($l->{m});
	$l->{sfd} = fileno($l->{s});
	ev('leak', name => "$l->{name}.master", fd => $l->{mfd}, closes => JSON::PP::true);
	ev('leak', name => "$l->{name}.slave", fd => $l->{sfd}, closes => JSON::PP::true);
}

sub leak_end {
	my ($l, $err) = @_;
	ev('readend', fd => $l->{mfd}, err => $err);
	$l->{w}->stop;
	delete $l->{w};
	$l->{open} = 0;
	close $l->{m};
	ev('close', name => "$l->{name}.master", fd => $l->{mfd});
	close $l->{s};
	ev('close', name => "$l->{name}.slave", fd => $l->{sfd});
}

sub watch {
	my ($l) = @_;
	$l->{open} = 1;
	$l->{w} = EV::io($l->{m}, EV::READ, sub {
		my ($w, $revents) = @_;
		if ($revents & EV::ERROR) {
			leak_end($l, 'ERR');
			return;
		}
		my $n = sysread($l->{m}, my $buf, 4096);
		if ($n) {
			ev('read', fd => $l->{mfd}, n => $n);
		} elsif (defined $n) {
			leak_end($l, 'EOF');
		} elsif ($! != EAGAIN && $! != EINTR) {
			leak_end($l, "$!");
		}
	});
}
watch($_) for @leaks[0, 1];

my $counter = 0;
my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64, ReuseAddr => 1) or exit 70;

sub respond {
	my ($c, $body) = @_;
	print $c "HTTP/1.1 200 OK\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
	close $c;
}

my @pending;
sub exercise {
	my ($c) = @_;
	my (@steps, @errors);
	my $check = sub { my ($what, $err) = @_; push @steps, $what; push @errors, "$what: $err" if $err };
	# Flow control: stop the open watchers for a while (libev leaves the
	# fd in epoll until an event comes for it, then deletes it) and start
	# them again (epoll_ctl ADD or MOD), and watch the late pair (ADD).
	$_->{w}->stop for grep { $_->{open} } @leaks[0, 1];
	push @pending, EV::timer(0.1, 0, sub {
		$_->{w}->start for grep { $_->{open} } @leaks[0, 1];
		watch($leaks[2]);
		$check->('re-armed: stop/start, late watch', undef);
	});
	push @pending, EV::timer(0.4, 0, sub {
		$check->('live echo', echo($live, 'after'));
		my $fresh = spawn_cat();
		$check->('new spawn echo', echo($fresh, 'fresh'));
		end_cat($fresh);
		respond($c, $json->encode({ok => @errors ? JSON::PP::false : JSON::PP::true, errors => \@errors, steps => \@steps}));
		@pending = ();
	});
}

my $accept = EV::io($server, EV::READ, sub {
	my $c = $server->accept or return;
	my $req = '';
	while ($req !~ /\r\n\r\n/) {
		my $n = sysread($c, $req, 4096, length $req);
		last unless $n;
	}
	my ($path) = $req =~ m{^GET (\S+)};
	$path //= '';
	if ($path eq '/count') {
		respond($c, $counter++);
	} elsif ($path =~ m{^/exit\?code=(\d+)}) {
		$exit_code = $1;
		respond($c, 'bye');
		end_cat($live);
		exit $exit_code;
	} elsif ($path eq '/exercise') {
		exercise($c);
	} else {
		respond($c, 'no such path');
	}
});

ev('ready', backend => EV::backend());
print 'ready ', $server->sockport, "\n";
STDOUT->flush;
EV::run;
