""" TornadoUserHandler: a service written the way a DIRAC developer writes one.

Migration from DIRAC needed only two import lines:

    from DIRAC import gLogger, S_OK, S_ERROR
    from DIRAC.Core.Tornado.Server.TornadoService import TornadoService

became the two lines below. Everything else (initializeHandler with its infosDict, auth_/types_ attributes,
export_ methods returning S_OK/S_ERROR, srv_getCSOption, getRemoteCredentials, gLogger) is DIRAC's API.
The "database" is an in-memory table so that the example needs no MySQL.
"""
import threading

from TornadoServices import gLogger, S_OK, S_ERROR
from TornadoServices.Server.TornadoService import TornadoService

sLog = gLogger.getSubLogger(__name__)


class UserDB:
    """Stands in for a DIRAC DB class: every method returns S_OK/S_ERROR."""

    def __init__(self):
        self.__lock = threading.Lock()
        self.__users = {}
        self.__lastId = 0

    def addUser(self, userName):
        with self.__lock:
            self.__lastId += 1
            self.__users[self.__lastId] = userName
            return S_OK(self.__lastId)

    def editUser(self, uid, value):
        with self.__lock:
            if uid not in self.__users:
                return S_ERROR("User %s does not exist" % uid)
            self.__users[uid] = value
        return S_OK()

    def getUserName(self, uid):
        with self.__lock:
            if uid not in self.__users:
                return S_ERROR("User %s does not exist" % uid)
            return S_OK(self.__users[uid])

    def listUsers(self):
        with self.__lock:
            return S_OK([[uid, name] for uid, name in sorted(self.__users.items())])

    def removeUser(self, uid):
        with self.__lock:
            if self.__users.pop(uid, None) is None:
                return S_ERROR("User %s does not exist" % uid)
        return S_OK()


class TornadoUserHandler(TornadoService):
    @classmethod
    def initializeHandler(cls, infosDict):
        """Handler initialization: one UserDB per service, as DIRAC services do"""
        cls.userDB = UserDB()
        cls.maxUsers = cls.srv_getCSOption("MaxUsers", 100)
        sLog.info("Initialized %s with MaxUsers=%s" % (infosDict["serviceName"], cls.maxUsers))
        return S_OK()

    auth_addUser = ["all"]
    types_addUser = [str]

    def export_addUser(self, whom):
        """Add a user and return its ID"""
        result = self.userDB.listUsers()
        if not result["OK"]:
            return result
        if len(result["Value"]) >= self.maxUsers:
            return S_ERROR("Too many users (MaxUsers=%s)" % self.maxUsers)
        credDict = self.getRemoteCredentials()
        self.log.verbose("addUser called by", credDict.get("username", "anonymous"))
        return self.userDB.addUser(whom)

    auth_editUser = ["all"]
    types_editUser = [int, str]

    def export_editUser(self, uid, value):
        """Edit a user"""
        return self.userDB.editUser(uid, value)

    auth_getUserName = ["all"]
    types_getUserName = [int]

    def export_getUserName(self, uid):
        """Get a user name"""
        return self.userDB.getUserName(uid)

    auth_listUsers = ["all"]
    types_listUsers = []

    def export_listUsers(self):
        """List all users"""
        return self.userDB.listUsers()

    auth_removeUser = ["all"]
    types_removeUser = [int]

    def export_removeUser(self, uid):
        """Remove a user"""
        return self.userDB.removeUser(uid)
