#!/usr/bin/perl
# A Perl program on libev (Debian's libev-perl, EV 4.x, epoll backend) that
# leaks PTYs the way real ones do (issue 9), keeps serving HTTP on
# 127.0.0.1, and after a release exercises the paths that break. libev is
# the loop the issue names for spinning: an epoll_ctl ADD that fails with
# EPERM (a /dev/null) makes it report the fd ready on every iteration.
#
# Leaks: two pairs watched by EV::io (a naive reader: EOF closes, an error
# dies in the callback, which EV reports and the loop survives), and an idle
# pair watched only later. A live terminal (cat) must keep its data. Events
# go as JSON lines to $EVENTS; exit code 3 when asked.
use strict;
use warnings;
use EV;
use Fcntl qw(O_RDWR O_NOCTTY);
use POSIX ();
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes ();

# ioctl numbers: the generic encoding, the same on x86_64 and arm64.
use constant { TIOCSPTLCK => 0x40045431, TIOCGPTN => 0x80045430 };

open(my $evfh, '>>', $ENV{EVENTS}) or die "events: $!";
$evfh->autoflush(1);
my $logged = 0;
my $json = JSON::PP->new->canonical;

sub ev {
	my ($kind, %o) = @_;
	# A storm is counted, not all written; exit and close always are.
	return if $logged++ >= 10000 && $kind ne 'exit' && $kind ne 'close';
	print $evfh $json->encode({ev => $kind, t => int(Time::HiRes::time() * 1e9), %o}), "\n";
}

# Every die in a callback: EV would print "EV: error in callback" and go on.
$EV::DIED = sub { ev('exception', msg => substr("$@", 0, 300)) };

# openpty without IO::Pty: /dev/ptmx, unlock, open the slave.
sub openpty {
	sysopen(my $m, '/dev/ptmx', O_RDWR | O_NOCTTY) or die "ptmx: $!";
	my $unlock = pack('i', 0);
	ioctl($m, TIOCSPTLCK, $unlock) or die "unlockpt: $!";
	my $n = pack('i', 0);
	ioctl($m, TIOCGPTN, $n) or die "ptsname: $!";
	sysopen(my $s, '/dev/pts/' . unpack('i', $n), O_RDWR | O_NOCTTY) or die "slave: $!";
	return ($m, $s);
}

# sleep_loop lets the loop run for a while inside a callback (ev_run may be
# called recursively).
sub sleep_loop {
	my ($secs) = @_;
	my $done = 0;
	my $t = EV::timer($secs, 0, sub { $done = 1 });
	EV::run(EV::RUN_ONCE) until $done;
}

# A leaked pair and its naive reader.
sub leak {
	my ($name) = @_;
	my ($m, $s) = openpty();
	my $l = {name => $name, m => $m, s => $s, mfd => fileno($m), sfd => fileno($s), open => 1};
	ev('leak', name => "$name.master", fd => $l->{mfd}, closes => JSON::PP::true);
	ev('leak', name => "$name.slave", fd => $l->{sfd}, closes => JSON::PP::true);
	return $l;
}

sub watch {
	my ($l) = @_;
	$l->{w} = EV::io($l->{m}, EV::READ, sub {
		my $n = sysread($l->{m}, my $buf, 4096);
		die "read fd $l->{mfd}: $!\n" unless defined $n; # naive: EIO dies
		if ($n > 0) {
			ev('read', fd => $l->{mfd}, n => $n);
			return;
		}
		ev('readend', fd => $l->{mfd}, err => 'EOF');
		$l->{w}->stop;
		delete $l->{w};
		$l->{open} = 0;
		close($l->{m});
		ev('close', name => "$l->{name}.master", fd => $l->{mfd});
		close($l->{s});
		ev('close', name => "$l->{name}.slave", fd => $l->{sfd});
	});
}

# A terminal running cat: its data must survive.
sub live {
	my ($m, $s) = openpty();
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		POSIX::setsid();
		open(STDIN, '<&', $s) && open(STDOUT, '>&', $s) && open(STDERR, '>&', $s) or POSIX::_exit(127);
		exec('cat') or POSIX::_exit(127);
	}
	close($s);
	my $t = {m => $m, pid => $pid, buf => ''};
	$t->{w} = EV::io($m, EV::READ, sub {
		my $n = sysread($m, my $b, 4096);
		$t->{buf} .= $b if $n;
	});
	return $t;
}

sub echo {
	my ($t, $word) = @_;
	syswrite($t->{m}, "$word\n");
	for (1 .. 100) {
		return undef if index($t->{buf}, $word) >= 0;
		sleep_loop(0.1);
	}
	return "no echo of $word";
}

sub end_live {
	my ($t) = @_;
	$t->{w}->stop;
	close($t->{m});
	kill('KILL', $t->{pid});
	waitpid($t->{pid}, 0);
}

my $live = live();
die "no echo before the release\n" if echo($live, 'before');
my @leaks = (leak('watch1'), leak('watch2'));
my $late = leak('late');
watch($_) for @leaks;
my $counter = 0;

sub exercise {
	my (@errors, @steps);
	my $check = sub { my ($what, $err) = @_; push @steps, $what; push @errors, "$what: $err" if $err };
	sleep_loop(0.3); # let a hang-up reach the loop
	for my $l (@leaks) {
		next unless $l->{open};
		# A careful program writes only to a terminal it has not seen
		# close; the write's error is its own business, a signal is not.
		my $n = syswrite($l->{m}, 'x');
		ev('write', fd => $l->{mfd}, err => defined $n ? '' : "$!");
		# Stop and start: libev re-arms the fd with epoll_ctl.
		$l->{w}->stop;
		sleep_loop(0.02);
		$l->{w}->start if $l->{open};
	}
	$check->('re-armed: stop/start', undef);
	watch($late); # the idle pair is watched only now
	$check->('late EV::io', undef);
	sleep_loop(0.3);
	$check->('live echo', echo($live, 'after'));
	my $fresh = live();
	$check->('new pty echo', echo($fresh, 'fresh'));
	end_live($fresh);
	return {ok => (@errors ? JSON::PP::false : JSON::PP::true), errors => \@errors, steps => \@steps};
}

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16, ReuseAddr => 1) or die "listen: $!";
my $accept = EV::io($server, EV::READ, sub {
	my $c = $server->accept or return;
	# The test's client sends its whole request at once.
	my $line = <$c> // '';
	while (defined(my $h = <$c>)) { last if $h =~ /^\r?\n$/ }
	my ($path) = $line =~ m{^\S+\s+(\S+)};
	$path //= '/';
	my ($status, $body, $exit) = (200, '', undef);
	if ($path eq '/count') {
		$body = $counter++;
	} elsif ($path eq '/exercise') {
		$body = $json->encode(exercise());
	} elsif ($path =~ m{^/exit\?code=(\d+)}) {
		($body, $exit) = ('bye', $1);
	} else {
		$status = 404;
	}
	print $c "HTTP/1.1 $status X\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
	close($c);
	if (defined $exit) {
		end_live($live);
		ev('exit', code => 0 + $exit);
		POSIX::_exit($exit);
	}
});

$| = 1;
print 'ready ', $server->sockport, "\n";
EV::run;
